"""connbench: what each way of holding PostgreSQL connections costs a FastAPI app."""

__version__ = "0.1.0"
