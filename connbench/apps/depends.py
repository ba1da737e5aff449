"""depends: a dependency *returns* a new connection; the path operation must finish it.

FastAPI hands the connection over and forgets it, so commit, rollback and close are the path
operation's job, in every path operation that uses it.
"""

from typing import Annotated

from fastapi import Depends, FastAPI
from psycopg import AsyncConnection

from connbench.apps.common import DATABASE_URL, INSERT_VISIT, VISIT_LOGGED, add_health_and_errors

app = FastAPI()
add_health_and_errors(app)


async def get_connection() -> AsyncConnection:
    return await AsyncConnection.connect(DATABASE_URL)


@app.get("/visit/")
async def visit(conn: Annotated[AsyncConnection, Depends(get_connection)]) -> dict[str, str]:
    try:
        await conn.execute(INSERT_VISIT)
        await conn.commit()
    except Exception:
        await conn.rollback()
        raise
    finally:
        await conn.close()
    return VISIT_LOGGED
