"""What a Store transaction costs in round trips on PostgreSQL (``bot.storage.database``,
``bot.storage.engine``): a read runs without BEGIN and ROLLBACK (under READ COMMITTED a transaction gives
it nothing), a write is one transaction, and a connection is not pinged on every checkout."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, text

from bot.storage.store import Store

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("db_url", ["postgres"], indirect=True)]


def in_transaction(conn: Connection) -> bool:
    conn.execute(text("SELECT 1"))
    return bool(conn.connection.driver_connection.is_in_transaction())  # asyncpg's own view


async def test_a_read_runs_outside_a_transaction_and_a_write_inside_one(store: Store) -> None:
    assert await store.database.run(in_transaction, write=False) is False
    assert await store.database.run(in_transaction, write=True) is True
    assert await store.database.run(in_transaction, write=False) is False  # the pooled connection is reset


async def test_a_write_that_fails_leaves_nothing_and_a_read_after_it_works(store: Store) -> None:
    def insert_then_fail(conn: Connection) -> None:
        conn.execute(text("INSERT INTO tags (slug, name) VALUES ('kept', 'Kept')"))
        conn.execute(text("SELECT 1 / 0"))

    with pytest.raises(Exception, match="DivisionByZero"):
        await store.database.run(insert_then_fail, write=True)
    assert await store.tags() == []  # rolled back
    assert await store.database.run(in_transaction, write=False) is False
