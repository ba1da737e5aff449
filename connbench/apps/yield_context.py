"""yield-context: a dependency yields from inside the connection's context manager.

The neatest-looking version, with a catch: FastAPI runs the code after ``yield`` when the
request is finished, so the commit (on leaving ``async with``) happens after the response
has been sent. A client can see "Visit logged" for a row whose commit then fails.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI
from psycopg import AsyncConnection

from connbench.apps.common import DATABASE_URL, INSERT_VISIT, VISIT_LOGGED, add_health_and_errors

app = FastAPI()
add_health_and_errors(app)


async def get_connection() -> AsyncIterator[AsyncConnection]:
    async with await AsyncConnection.connect(DATABASE_URL) as conn:
        yield conn


@app.get("/visit/")
async def visit(conn: Annotated[AsyncConnection, Depends(get_connection)]) -> dict[str, str]:
    await conn.execute(INSERT_VISIT)
    return VISIT_LOGGED
