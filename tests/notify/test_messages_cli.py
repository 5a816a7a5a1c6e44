"""`lockerctl messages`: the locker's place, the templates' check, a delivery's messages and the
letters printed from the command line, with the configuration file's sections."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from notify_helpers import fleet, loaded_delivery

from lockertools.cli import main
from lockertools.service import fleet_db


@pytest.fixture(autouse=True)
def _on_both_databases(database: str) -> str:
    return database


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "lockertools.toml"
    path.write_text(f'[town]\nname = "Gent"\nhelp_phone = "09 210 10 10"\n\n[messages]\nchannels = ["email"]\n{extra}'
                    '\n[email]\nhost = "127.0.0.1"\nsender = "loket@gent.example"\n')  # fmt: skip
    return path


def test_place_letters_and_the_list_from_the_command_line(tmp_path: Path) -> None:
    db_path = tmp_path / "fleet.db"
    conn = fleet(db_path)
    issued = loaded_delivery(conn, fleet_db.Resident(name="Jef Peeters", language="fr"))
    config = _config(tmp_path)
    runner = CliRunner()
    done = runner.invoke(main, ["messages", "place", "hall-1", "--db", str(db_path), "--address", "Markt 7, Gent",
                                "--hours", "ouvert de 7 à 22 h"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "hall-1: Markt 7, Gent; ouvert de 7 à 22 h" in done.output
    # The service plans the letter (the resident has no e-mail); here the outbox runs once by hand.
    import asyncio

    from lockertools.config import load
    from lockertools.notify import Outbox

    asyncio.run(Outbox(load(config)).run_once(conn))
    listed = runner.invoke(
        main, ["--config", str(config), "messages", "list", str(issued.number), "--db", str(db_path)]
    )
    assert listed.exit_code == 0, listed.output
    assert "reaches the resident by: letter" in listed.output and "hand over the letter" in listed.output
    pdf = tmp_path / "letters.pdf"
    letters = ["--config", str(config), "messages", "letters", "--db", str(db_path), "--out", str(pdf)]
    printed = runner.invoke(main, [*letters, "--printed"])
    assert printed.exit_code == 0, printed.output
    assert "1 letter(s)" in printed.output and "1 recorded as printed" in printed.output
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, check=True, text=True).stdout
    assert "Markt 7, Gent" in text and "ouvert de 7 à 22 h" in text and "Tapez le code." in text
    assert conn.execute("SELECT count(*) FROM held_codes").fetchone()[0] == 0
    again = runner.invoke(
        main, ["--config", str(config), "messages", "letters", "--db", str(db_path), "--out", str(pdf)]
    )
    assert "no letters to print" in again.output


def test_the_check_names_the_bad_file_and_line(tmp_path: Path) -> None:
    own = tmp_path / "own" / "en"
    own.mkdir(parents=True)
    (own / "reminder.txt").write_text("{% block subject %}{{ town }}{% endblock %}\n\n{% block body %}{{ cod }}"
                                      "{% endblock %}{% block sms %}{% endblock %}")  # fmt: skip
    config = _config(tmp_path, f'templates = "{tmp_path / "own"}"\n')
    done = CliRunner().invoke(main, ["--config", str(config), "messages", "check"])
    assert done.exit_code == 1
    assert f"{own / 'reminder.txt'}:3: unknown field 'cod'" in done.output
