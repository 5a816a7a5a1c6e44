"""Revision 0006_notify: a fleet database at the revision before it gets the outbox table and keeps
its deliveries; their messages are then planned as for a new database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from notify_helpers import fleet, loaded_delivery, settings

from lockertools.notify import Outbox, letters_to_print
from lockertools.service import db, fleet_db


@pytest.fixture(autouse=True)
def _on_both_databases(database: str) -> str:
    return database


def test_a_database_before_the_outbox_gets_it_and_keeps_its_deliveries(tmp_path: Path) -> None:
    conn = fleet(tmp_path / "fleet.db")
    issued = loaded_delivery(conn, fleet_db.Resident(name="Jef", language="nl"))
    with db.transaction(conn):  # as the program before this revision left it
        conn.execute("UPDATE alembic_version SET version_num = '0004_desk_accounts'")
    conn.execute("DROP TABLE resident_messages")
    conn.close()
    again = db.connect(tmp_path / "fleet.db")
    assert db.schema_revision(again) == db.schema_head()  # 0006_notify and every later revision
    assert fleet_db.delivery_resident(again, issued.number) == fleet_db.Resident(name="Jef", language="nl")
    asyncio.run(Outbox(settings(["email"])).run_once(again))
    assert [m.delivery for m in letters_to_print(again)] == [issued.number]
    again.close()
