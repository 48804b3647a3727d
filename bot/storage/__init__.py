"""Persistence: SQLAlchemy Core tables, repositories, units of work, migrations."""
