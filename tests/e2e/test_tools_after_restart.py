"""A technician's tool right after the host service restarted (the whole chain: real firmware, the host
service, mosquitto). The service's command numbers run up to 10 minutes ahead of the clock after a
restart (db.CommandSeqs); a tool with the service's database shares them (maint.client.SeqBlocks), one with
only the locker's key numbers by the clock and is refused as a replay."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from e2e_chain import LABELS, LID, Chain

from lockertools.cli import main
from lockertools.service import db
from tests.support.mosquitto import wait_until


def test_lockerctl_diag_right_after_a_service_restart(chain: Callable[..., Chain], tmp_path: Path) -> None:
    c = chain()
    c.boot()
    c.wait_synced()
    c.issue("2")
    c.wait_synced()
    # A restart: the new service starts above the stored reservation, and its first command takes the
    # locker's last seq there.
    c.restart_service()
    c.issue("3")
    c.wait_synced()
    # The technician's own broker user (a tool logged in as the service's user would take its session).
    broker = c.broker
    broker.passwords["tech"] = broker.setup.add_host("tech")
    broker.setup.write()
    broker.server.reload()

    def tech_in() -> bool:
        with broker.client("tech", track=False) as t:
            return t.connect() == 0

    wait_until(tech_in, 10, "the broker to accept the tech user", poll=0.05)
    pw = tmp_path / "tech.pw"
    pw.write_text(broker.passwords["tech"])
    link = ["--broker", f"{broker.host}:{broker.port}", "--user", "tech", "--password-file", str(pw)]

    by_clock = CliRunner().invoke(main, ["diag", LID, *link, "--flash", str(c.flash_dir), "--timeout", "3"])
    assert by_clock.exit_code == 1 and "no reply" in by_clock.output, by_clock.output
    c.wait(lambda: c.fw_count("refused", r="replay") >= 1, "the locker to refuse the clock-numbered diag")

    # The database as `service run --db` takes it: a URL (PostgreSQL's, or sqlite:///PATH).
    url = db.database_url(c.db_path).render_as_string(hide_password=False)
    shared = CliRunner().invoke(main, ["diag", LID, *link, "--db", url, "--json", "--timeout", "10"])
    assert shared.exit_code == 0, shared.output
    d = json.loads(shared.output)
    assert len(d["doors"]) == len(LABELS) and d["heap_free"] > 0
    # The service's numbers go on above the tool's block: its next change still reaches the locker.
    c.issue("4")
    c.wait_synced()
