"""sync-connect: ``connect`` with a plain ``def`` path operation and a sync ``Connection``.

FastAPI runs a ``def`` path operation in its thread pool (40 threads by default), so the
blocking calls do not stall the event loop; at most 40 requests per worker are served at once.
Still one server session per request.
"""

from fastapi import FastAPI
from psycopg import Connection

from connbench.apps.common import DATABASE_URL, INSERT_VISIT, VISIT_LOGGED, add_health_and_errors

app = FastAPI()
add_health_and_errors(app)


@app.get("/visit/")
def visit() -> dict[str, str]:
    conn = Connection.connect(DATABASE_URL)
    try:
        conn.execute(INSERT_VISIT)
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.close()
    return VISIT_LOGGED
