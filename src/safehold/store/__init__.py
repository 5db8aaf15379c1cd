"""The versioned store on SQLAlchemy Core (SQLite via APSW, PostgreSQL via psycopg)."""
