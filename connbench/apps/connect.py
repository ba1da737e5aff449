"""connect: the path operation opens a connection by hand and closes it in ``finally``.

Every request pays for a new server session: TCP connect, authentication, backend fork.
"""

from fastapi import FastAPI
from psycopg import AsyncConnection

from connbench.apps.common import DATABASE_URL, INSERT_VISIT, VISIT_LOGGED, add_health_and_errors

app = FastAPI()
add_health_and_errors(app)


@app.get("/visit/")
async def visit() -> dict[str, str]:
    conn = await AsyncConnection.connect(DATABASE_URL)
    try:
        await conn.execute(INSERT_VISIT)
        await conn.commit()
    except Exception:
        await conn.rollback()
        raise
    finally:
        await conn.close()
    return VISIT_LOGGED
