"""Infrastructure: child processes, private temp dirs, PostgreSQL, PgBouncer, the app server."""
