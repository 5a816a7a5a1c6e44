"""The simulator's demo account and its one-time login tickets (lockertools.sim.web.desk), on a
fleet database of their own: no lockers, no browser."""

from __future__ import annotations

from pathlib import Path

from lockertools.desk import auth
from lockertools.service import db
from lockertools.sim.web.desk import DEMO_NAME, DEMO_ROLE, TICKET_S, SimDesk


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_each_run_gives_the_demo_account_a_new_password_and_enables_it(tmp_path: Path) -> None:
    target = tmp_path / "fleet.db"
    db.connect(target, create=True).close()
    first = SimDesk(target, 1)
    with db.connect(target) as conn:
        account = auth.find_account(conn, DEMO_NAME)
        assert account.role == DEMO_ROLE
        hashed = conn.execute("SELECT password_hash FROM desk_accounts WHERE id = ?", (account.id,)).fetchone()[0]
        auth.set_disabled(conn, account.id, True, 0.0)  # an admin disabled it between runs
    first.engine.dispose()
    second = SimDesk(target, 1)
    with db.connect(target) as conn:
        again = auth.find_account(conn, DEMO_NAME)
        assert (again.id, again.disabled) == (account.id, False)
        assert (
            conn.execute("SELECT password_hash FROM desk_accounts WHERE id = ?", (account.id,)).fetchone()[0] != hashed
        )
        assert len(auth.accounts(conn)) == 1
    second.engine.dispose()


def test_a_ticket_logs_in_once_and_only_while_it_is_fresh(tmp_path: Path) -> None:
    target = tmp_path / "fleet.db"
    db.connect(target, create=True).close()
    clock = _Clock()
    desk = SimDesk(target, 1, clock=clock)
    try:
        ticket = desk.ticket()
        assert len(ticket) >= 40
        assert desk._take_ticket(ticket) is True
        assert desk._take_ticket(ticket) is False  # used
        assert desk._take_ticket("") is False and desk._take_ticket(ticket + "x") is False
        late = desk.ticket()
        clock.now += TICKET_S + 1
        assert desk._take_ticket(late) is False  # expired
        assert desk.ticket() != desk.ticket()
    finally:
        desk.engine.dispose()
