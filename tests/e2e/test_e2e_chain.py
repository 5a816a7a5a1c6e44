"""The whole chain, real pieces only (e2e_chain.py): host service + SQLite, a real mosquitto, a
FaultProxy, and the real firmware on a simulated board. docs/protocol.md is the contract; every
message seen on lockers/# is checked against it (signature with the locker key, schema).

Every wait is a condition wait with a deadline; every process is stopped at teardown.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from e2e_chain import APP, LABELS, LID, NOT_FOR_HOST, Chain

from lockertools.commands import CommandSigner
from lockertools.contract import check_wire
from lockertools.service import fleet_db
from lockertools.sim import default_micropython

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]


def test_the_audit_only_events_are_the_ones_the_chain_checks_skip() -> None:
    """e2e_chain.NOT_FOR_HOST lists the events app.py records with to_host=False: kept in step."""
    calls = re.findall(r'self\.record\("(\w+)"[^\n]*to_host=False', APP.read_text())
    assert sorted(calls) == sorted(kind for kind, _ in NOT_FOR_HOST), calls


def test_issue_sync_pickup_and_the_host_records_it(chain: Callable[..., Chain]) -> None:
    c = chain()
    c.put_parcel("2")
    c.boot()
    c.wait_synced()  # revision 0 on both ends
    code = c.issue("2")
    assert c.host_rev() == 1
    c.wait_synced()
    st = c.last_status()
    assert st is not None and st["codes"] == 1 and st["rev"] == 1

    c.pickup(code.code, "2")

    def recorded() -> bool:
        return any(e["k"] == "pickup" for e in c.db_events())

    c.wait(recorded, "the pickup in the host's database")
    pickups = [e for e in c.db_events() if e["k"] == "pickup"]
    assert len(pickups) == 1 and pickups[0]["id"] == code.code_id and pickups[0]["d"] == "2", pickups
    row = c.query("SELECT state, used_at FROM codes WHERE id = ?", code.code_id)[0]
    assert row["state"] == "used" and row["used_at"] is not None
    door = c.query("SELECT state, doors.full FROM doors WHERE locker_id = ? AND label = '2'", LID)[0]
    assert door["full"] == 0, dict(door)
    c.wait_all_events()  # every event recorded once, and the host's acks drained the outbox
    c.check_codes_consistent()
    # The used code leaves the locker's store: one more revision on the host (a `del`), synced.
    assert c.host_rev() == 2
    c.wait_synced()
    assert c.last_status()["codes"] == 0  # type: ignore[index]
    c.issue("3")
    c.wait_synced()
    st = c.last_status()
    assert st is not None and st["rev"] == 3 and st["codes"] == 1, st
    # Everything that travelled, both ways, by the contract.
    assert c.messages("cmd") and c.messages("reply") and c.messages("events")
    assert c.check_every_message() > 10


def test_the_whole_chain_over_tls(tls_chain: Callable[..., Chain]) -> None:
    """The production set-up: the locker (CERT_REQUIRED, host name checked), the service and the tap
    all on the broker's TLS listener, with the fleet's CA."""
    c = tls_chain()
    c.put_parcel("1")
    c.boot()
    c.wait_synced()
    code = c.issue("1")
    c.wait_synced()
    c.pickup(code.code, "1")
    c.wait(lambda: any(e["k"] == "pickup" for e in c.db_events()), "the pickup in the host's database")
    c.wait_all_events()
    c.check_codes_consistent()
    assert c.query("SELECT state FROM codes WHERE id = ?", code.code_id)[0]["state"] == "used"
    assert c.check_every_message() > 5


def test_a_pickup_s_delete_reaches_the_locker_by_itself(chain: Callable[..., Chain]) -> None:
    """Regression: the pickup's `del` raised H inside the service's own transaction, and nothing synced
    it until the next change or the locker's 5-minute status (fixed in service/runner.py meanwhile:
    an event that changes H marks its locker `touched`)."""
    c = chain()
    c.put_parcel("1")
    code = c.issue("1")
    c.boot()
    c.wait_synced()
    c.pickup(code.code, "1")
    c.wait(lambda: c.host_rev() == 2, "the host to record the pickup (H 1 -> 2)")
    c.wait_synced(timeout=15)  # nothing else happens: the service alone must send the delete


def _finish(c: Chain, used: int) -> None:
    """The checks after any fault (after one more change from the host): the locker at the host's
    revision, holding the host's active codes; every event the firmware made for the host in the
    database once, the outbox drained, the codes' state consistent, every message by the contract."""
    c.wait(lambda: len([e for e in c.db_events() if e["k"] == "pickup"]) >= used, f"{used} pickups recorded")
    c.issue("4")
    c.wait_synced()
    active = c.query("SELECT count(*) FROM codes WHERE locker_id = ? AND state = 'issued'", LID)[0][0]
    st = c.last_status()
    assert st is not None and st["codes"] == active, (st, active)
    c.wait_all_events()
    c.check_codes_consistent()
    assert c.check_every_message() > 0


def test_broker_killed_and_restarted_in_the_middle_of_traffic(chain: Callable[..., Chain]) -> None:
    c = chain()
    for label in ("1", "2", "3"):
        c.put_parcel(label)
    codes = {label: c.issue(label) for label in ("1", "2", "3")}
    c.boot()
    c.wait_synced()

    # Traffic: a pickup, a wrong code, a code issued.
    c.pickup(codes["1"].code, "1")
    c.wrong_code()
    early = c.issue("4")

    # SIGKILL the broker as soon as the next pickup's `unlock` event is on the wire (the rest of
    # the pickup, and its acknowledgement, happen with the broker gone).
    killer: list[threading.Thread] = []

    def on_message(topic: str, payload: bytes) -> None:
        if not killer and topic.endswith("/events") and b'"unlock"' in payload:
            killer.append(threading.Thread(target=c.broker.server.kill))
            killer[0].start()

    c.tap.hooks.append(on_message)
    late = c.issue("4")  # a code change on its way while the locker works
    c.pickup(codes["2"].code, "2")
    c.wait(lambda: bool(killer), "the broker killed mid-pickup", 10)
    killer[0].join(10)
    assert not c.broker.server.running
    # With the broker down: more events on the locker, more changes on the host.
    c.wrong_code()
    c.revoke(early.code_id)
    c.issue("4")
    # The restarted broker lost the service's session (killed before it saved it): the locker is let
    # back in once the service has subscribed again, or what it sends first is dropped by the broker
    # and comes again only with its 30 s resend (that case: test_events_the_restarted_broker_drops...).
    connects = c.service.connects()
    c.proxy.cut()
    c.broker.server.start()
    c.wait(lambda: c.service.connects() > connects, "the service to connect and subscribe again", 20)
    c.proxy.heal()

    c.wrong_code()
    c.pickup(codes["3"].code, "3")
    _finish(c, used=3)
    assert c.query("SELECT state FROM codes WHERE id = ?", late.code_id)[0][0] == "issued"
    assert c.query("SELECT state FROM codes WHERE id = ?", early.code_id)[0][0] == "revoked"


def test_network_cut_and_stalled_by_the_proxy(chain: Callable[..., Chain]) -> None:
    c = chain()
    for label in ("1", "2", "3"):
        c.put_parcel(label)
    codes = {label: c.issue(label) for label in ("1", "2", "3")}
    c.boot()
    c.wait_synced()
    c.pickup(codes["1"].code, "1")

    # Cut: the locker is alone for a while; both sides change meanwhile.
    c.proxy.cut()
    c.wrong_code()
    c.pickup(codes["2"].code, "2")
    extra = c.issue("4")
    c.revoke(extra.code_id)
    kept = c.issue("1")
    c.proxy.heal()
    c.wait_synced()
    assert c.proxy.stats().resets >= 1

    # Stall: the connections stay open, nothing moves; both sides change meanwhile.
    c.proxy.stall()
    mark = c.proxy.stats()
    c.wrong_code()
    c.issue("4")
    c.proxy.stall(False)
    c.proxy.wait_for(lambda s: s.bytes_up > mark.bytes_up and s.bytes_down > mark.bytes_down, 10, "traffic again")

    c.pickup(codes["3"].code, "3")
    _finish(c, used=3)
    assert c.query("SELECT state FROM codes WHERE id = ?", kept.code_id)[0][0] == "issued"


def _cut_on(c: Chain, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Power-cuts the locker from the tap's thread the moment a reply matching `pred` is on the wire
    (the host is sending the next command by then). Returns the list the trigger reply goes into."""
    hit: list[dict[str, Any]] = []

    def on_message(topic: str, payload: bytes) -> None:
        if hit or not topic.endswith("/reply") or not payload:
            return
        reply = check_wire(topic, payload, c.key)
        if pred(reply):
            hit.append(reply)
            c.board.power_cut()

    c.tap.hooks.append(on_message)
    return hit


def _statuses_after(c: Chain, n: int) -> list[dict[str, Any]]:
    return [m for m in c.messages("status")[n:] if m.get("online")]


def test_power_cut_between_codes_apply_batches(chain: Callable[..., Chain]) -> None:
    """300 codes: ten codes.apply of at most 32 changes; the power goes after the first reply."""
    c = chain()
    issued = [c.issue(LABELS[i % 4]) for i in range(300)]
    last = issued[-1]
    c.put_parcel(last.door)
    hit = _cut_on(c, lambda r: r["ok"] is True and r.get("rev") == 32)
    c.boot()
    c.wait(lambda: hit and not c.board.running, "the power cut after the first batch", 20)
    seen = len(c.messages("status"))
    c.boot()
    # The locker comes back at a real revision: one of the batches' ends, never half of one.
    c.wait(lambda: _statuses_after(c, seen), "the status after the reboot", 20)
    rev = _statuses_after(c, seen)[0]["rev"]
    assert rev in range(32, 301, 32), rev
    print(f"\nback at revision {rev} after the cut")
    c.wait_synced()
    st = c.last_status()
    assert st is not None and st["rev"] == 300 and st["codes"] == 300 and st["snap"] is False, st
    applies = [m for m in c.messages("cmd") if m["op"] == "codes.apply"]
    assert len({m["tx"] for m in applies}) >= 10, len(applies)
    # A code of the last batch opens its door.
    c.pickup(last.code, last.door)
    c.wait(lambda: any(e["k"] == "pickup" and e["id"] == last.code_id for e in c.db_events()), "the pickup")
    c.wait_all_events(exact=False)  # an event in the outbox but not yet printed when the power went
    c.check_codes_consistent()
    assert c.check_every_message() > 20


def test_power_cut_during_a_snapshot_of_a_damaged_store(chain: Callable[..., Chain]) -> None:
    """codes.bin is garbage (damaged with the power off): the locker asks for a snapshot; 300 codes
    come in ten parts; the power goes after the first part's reply; the snapshot starts over."""
    c = chain()
    issued = [c.issue(LABELS[i % 4]) for i in range(300)]
    (c.flash_dir / "codes.bin").write_bytes(b"this is not a code store, just some bytes that were left behind")
    # The code in the last part: parts are sorted by tag across all parts.
    last = max(issued, key=lambda code: fleet_db.tag_hex(c.key, code.door, code.code))
    c.put_parcel(last.door)
    hit = _cut_on(c, lambda r: r["ok"] is True and r.get("part") == 1)
    c.boot()
    c.wait(lambda: hit and not c.board.running, "the power cut after the first part", 20)
    first = c.messages("status")[0]
    assert first["snap"] is True and first["rev"] == 0 and first["codes"] == 0, first
    seen = len(c.messages("status"))
    c.boot()
    c.wait(lambda: _statuses_after(c, seen), "the status after the reboot", 20)
    again = _statuses_after(c, seen)[0]
    assert again["snap"] is True and again["rev"] == 0, again  # the staged part was abandoned
    c.wait_synced()
    st = c.last_status()
    assert st is not None and st["rev"] == 300 and st["codes"] == 300 and st["snap"] is False, st
    parts = [m["args"] for m in c.messages("cmd") if m["op"] == "codes.snapshot"]
    assert max(p["parts"] for p in parts) == 10 and sum(1 for p in parts if p["part"] == 1) >= 2, parts
    assert any(m.get("m", "").startswith("codes.bin") for m in c.db_events() if m["k"] == "problem")
    c.pickup(last.code, last.door)
    c.wait(lambda: any(e["k"] == "pickup" and e["id"] == last.code_id for e in c.db_events()), "the pickup")
    c.wait_all_events(exact=False)
    c.check_codes_consistent()


def test_replayed_expired_retained_and_forged_commands_are_refused_and_recorded(chain: Callable[..., Chain]) -> None:
    c = chain()
    signer = CommandSigner(LID, c.key)
    # Retained: waiting on the broker before the locker ever connects (a retained "open" would act
    # at every boot).
    retained = signer.command("time")
    c.publish_raw("cmd", retained, retain=True, injected=False)  # validly signed: checked like the rest
    c.boot()
    c.wait_synced()
    # Clear it: the empty message reaches the subscribed locker too, and is refused as `malformed`.
    c.publish_raw("cmd", b"", retain=True)

    # Replay: a real command the service sent, published again as it was.
    c.issue("1")
    c.wait_synced()
    sent = [m.payload for m in c.tap.received(c.topic("cmd")) if b'"op":"codes.apply"' in m.payload]
    assert sent, "the service's codes.apply was not seen"
    c.publish_raw("cmd", sent[-1], injected=False)
    # Expired: signed right, fresh seq, but its time is up.
    expired = signer.command("codes.apply", {"base": 1, "rev": 50, "add": [], "del": []}, now=int(time.time()) - 600)
    c.publish_raw("cmd", expired, injected=False)
    # Forged: another key.
    forged = CommandSigner(LID, bytes(32)).command("codes.apply", {"base": 1, "rev": 51, "add": [], "del": []})
    c.publish_raw("cmd", forged)
    # For another locker, signed with this one's key.
    other = CommandSigner("hall-2", c.key).command("codes.apply", {"base": 1, "rev": 52, "add": [], "del": []})
    c.publish_raw("cmd", other)

    want = {"retained", "malformed", "replay", "expired", "bad_signature", "wrong_locker"}

    def recorded() -> set[str]:
        return {e["r"] for e in c.db_events() if e["k"] == "refused"}

    c.wait(lambda: want <= recorded(), f"refused events {sorted(want)} in the host's database", 20)
    refused = {e["r"]: e for e in c.db_events() if e["k"] == "refused"}
    assert refused["replay"]["op"] == "codes.apply" and refused["expired"]["op"] == "codes.apply"
    assert refused["retained"]["op"] == "time" and refused["bad_signature"]["op"] is None
    assert all(e["n"] == 1 for e in refused.values()), refused
    # No reply to any of them, and nothing changed: the locker is where the host put it.
    txs = {json.loads(w[65:])["tx"] for w in (retained, expired, forged, other)}
    assert not txs & {m["tx"] for m in c.messages("reply")}
    assert c.fw_count("refused") == len(want), [(e["r"], e["op"]) for e in c.fw_events() if e["k"] == "refused"]
    c.wait_synced()
    assert c.last_status()["rev"] == 1  # type: ignore[index]
    # The gate still admits the host's next command.
    c.issue("2")
    c.wait_synced()
    c.wait_all_events()
    assert c.check_every_message() > 0


@pytest.mark.slow
def test_events_the_restarted_broker_drops_come_again_with_the_locker_s_resend(chain: Callable[..., Chain]) -> None:
    """The broker is killed before it saved the service's session; the locker is back before the
    service: the broker takes the locker's events (PUBACK) with nobody subscribed and drops them. The
    host's acknowledgement is what counts: the locker sends them again after its resend timeout (30 s).
    (With the subscription saved by the broker, they wait in the service's session instead.)"""
    c = chain(service_proxy=True)
    c.boot()
    c.wait_synced()
    c.wait_all_events()
    assert c.service_proxy is not None
    c.service_proxy.cut()  # the service stays away until the locker has sent what it holds
    c.broker.server.kill()
    c.wrong_code()
    c.wrong_code()
    mark = c.proxy.stats()
    c.broker.server.start()
    c.proxy.wait_for(lambda s: s.accepted > mark.accepted and s.bytes_up > mark.bytes_up + 600, 30, "the events sent")
    c.service_proxy.heal()
    c.wait_all_events(timeout=60)
    resent = any("resend" in ln for ln in c.board.log_lines())
    print(f"\nthe broker {'dropped the events: the locker sent them again' if resent else 'queued the events'}")
    c.check_every_message()
