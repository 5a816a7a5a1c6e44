"""The desk's connection pool: a connection is kept for the next call only when its call left it
sound (no transaction open, no database error)."""

from __future__ import annotations

import pytest

from lockertools.desk import auth
from lockertools.desk.base import ConnectionPool
from lockertools.service import db


def test_a_sound_connection_is_used_again_a_broken_one_is_not(desk_db: str) -> None:
    engine = db.engine_for(desk_db)
    pool = ConnectionPool(engine, size=1)
    try:
        first = pool.call(lambda conn: conn)
        assert pool.call(lambda conn: conn) is first  # kept
        with pytest.raises(auth.AuthError):
            pool.call(lambda conn: auth.find_account(conn, "nobody"))  # a refusal: still sound
        assert pool.call(lambda conn: conn) is first

        def bad_sql(conn: db.Connection) -> None:
            conn.execute("SELECT no_such_column FROM desk_accounts")

        with pytest.raises(db.Error):
            pool.call(bad_sql)
        second = pool.call(lambda conn: conn)
        assert second is not first  # the failed one was closed, not kept

        def left_open(conn: db.Connection) -> None:
            conn.execute("BEGIN")
            conn.in_transaction = True

        pool.call(left_open)
        assert pool.call(lambda conn: conn) is not second
        assert pool.call(lambda conn: conn.execute("SELECT count(*) FROM desk_accounts").scalar()) == 3
    finally:
        pool.close()
        engine.dispose()
