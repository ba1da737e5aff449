"""yield: a dependency with ``yield`` owns the connection's whole life.

The code after ``yield`` commits, rolls back on error and closes, so path operations only use
the connection. Still one server session per request.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI
from psycopg import AsyncConnection

from connbench.apps.common import DATABASE_URL, INSERT_VISIT, VISIT_LOGGED, add_health_and_errors

app = FastAPI()
add_health_and_errors(app)


async def get_connection() -> AsyncIterator[AsyncConnection]:
    conn = await AsyncConnection.connect(DATABASE_URL)
    try:
        yield conn
        await conn.commit()
    except Exception:
        await conn.rollback()
        raise
    finally:
        await conn.close()


@app.get("/visit/")
async def visit(conn: Annotated[AsyncConnection, Depends(get_connection)]) -> dict[str, str]:
    await conn.execute(INSERT_VISIT)
    return VISIT_LOGGED
