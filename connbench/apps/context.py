"""context: the path operation uses the connection's context manager.

``async with`` commits on success, rolls back on error and closes either way: the same work
as ``connect``, with less to get wrong. Still one server session per request.
"""

from fastapi import FastAPI
from psycopg import AsyncConnection

from connbench.apps.common import DATABASE_URL, INSERT_VISIT, VISIT_LOGGED, add_health_and_errors

app = FastAPI()
add_health_and_errors(app)


@app.get("/visit/")
async def visit() -> dict[str, str]:
    async with await AsyncConnection.connect(DATABASE_URL) as conn:
        await conn.execute(INSERT_VISIT)
    return VISIT_LOGGED
