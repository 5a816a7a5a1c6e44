"""A code's kind in the staff's language: the wall and a delivery's page word the kind and a low door
in Dutch, French or English (the size letters stay S, M, L), while fleet_db.describe_kind stays the
CLI's English; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from desk_support import DeskClient, DeskServer
from pages_support import LOCKER, Locker, table_rows

from lockertools.service import db, fleet_db

ClientFor = Callable[[str | None], DeskClient]

# language: (a pickup code's kind, a loaded parcel, a delivery L low, ... with no item on record)
WORDS = {
    "nl": ("ophaling", "pakket", "levering L lage deur"),
    "fr": ("retrait", "colis", "livraison L porte basse"),
    "en": ("pickup", "parcel", "delivery L low"),
}


@pytest.fixture
def locker(desk_server: DeskServer) -> Locker:
    return Locker(desk_server)


def _inside(html: str) -> dict[str, str]:
    """The wall's "inside" cell of each door."""
    return {row[0]: row[4] for row in table_rows(html)}


@pytest.mark.parametrize("language", sorted(WORDS))
def test_the_wall_words_what_a_door_holds_in_the_reader_s_language(
    language: str, locker: Locker, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    with desk_server.connect() as conn:
        fleet_db.issue_code(conn, LOCKER, "2", fleet_db.KIND_PICKUP)  # an item put in by hand: no item named
        parcel = fleet_db.prepare_delivery(conn, LOCKER, "L")
        unnamed = fleet_db.prepare_delivery(conn, LOCKER, "L", low=True)
        with db.transaction(conn):  # a delivery whose item is not on record (the column may be empty)
            conn.execute("UPDATE codes SET item = NULL WHERE id = ?", (unnamed.number,))
    locker.event("loaded", "4", id=parcel.number)
    locker.event("loaded", "3", id=unnamed.number)
    client = desk_client("desk")
    client.get(f"/language/{language}?next=/lockers")
    inside = _inside(client.get(f"/lockers/{LOCKER}").text)
    pickup, item, delivery = WORDS[language]
    assert (inside["2"], inside["4"], inside["3"]) == (pickup, item, delivery)
    with desk_server.connect() as conn:  # the CLI's words are English whatever the desk reads
        kind = conn.execute("SELECT kind FROM codes WHERE id = ?", (unnamed.number,)).fetchone()[0]
    assert fleet_db.describe_kind(int(kind)) == "delivery L low"


@pytest.mark.parametrize("language", sorted(WORDS))
def test_a_delivery_s_page_words_its_kind_in_the_reader_s_language(
    language: str, locker: Locker, desk_client: ClientFor, desk_server: DeskServer
) -> None:
    with desk_server.connect() as conn:
        number = fleet_db.prepare_delivery(conn, LOCKER, "L", low=True).number
    client = desk_client("desk")
    client.get(f"/language/{language}?next=/deliveries")
    page = client.get(f"/deliveries/{number}")
    assert page.status == 200
    item, kind = WORDS[language][1], WORDS[language][2]
    assert f"{item} ({kind})" in page.text
    if language != "en":
        assert "delivery L low" not in page.text
