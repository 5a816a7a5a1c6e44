# The uplink (locker.uplink) against a fake MQTT client: no sockets, a fake clock, no sleeps.
# Dual runtime (CPython and MicroPython): plain asserts; async parts yield, never sleep.
import asyncio
import json

import fakes
from locker import outbox, protocol, store
from locker.hmac256 import HmacKey

# --- stand-ins for what is being written in parallel (tests only; never in their modules) --------

if not hasattr(protocol, "topic"):

    def _topic(lid, leaf):
        return "lockers/%s/%s" % (lid, leaf)

    def _event_payload(lid, seq, ev):
        return b'{"v":1,"lid":"%s","seq":%d,"ev":' % (lid.encode(), seq) + bytes(ev) + b"}"

    def _will_payload(lid):
        return protocol.encode({"v": 1, "lid": lid, "online": False})

    protocol.topic = _topic
    protocol.event_payload = _event_payload
    protocol.will_payload = _will_payload

if not hasattr(outbox.Outbox, "after"):

    def _after(self, seq):
        for i in range(self._n):
            s = self._seqs[i]
            if s > seq:
                return (s, store.load(self._path(s)))
        return None

    outbox.Outbox.after = _after

from locker import uplink  # noqa: E402 - after the stand-ins

KEY = bytes(range(32))
HKEY = HmacKey(KEY)
LID = "hall-1"


def _run(coro):
    if hasattr(asyncio, "sleep_ms"):  # MicroPython: one global loop; start each test clean
        asyncio.new_event_loop()
    asyncio.run(coro)


async def _until(cond, rounds=2000):
    """Yield to the other tasks until cond() holds: a condition wait, no time passes."""
    for _ in range(rounds):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


# --- fakes --------------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.ms = 1000

    def __call__(self):
        return self.ms


class Wall:
    known = True

    def now(self, now_ms):
        return 1795600000 + now_ms // 1000


class FakeClient:
    """What Uplink uses of locker.mqtt.Client. publish() waits for a PUBACK when gated."""

    def __init__(self, connect_fn, client_id, **kw):
        self.client_id = client_id
        self.kw = kw
        self.connected = False
        self.stats = {"oversized": 0}
        self.last_error = None
        self.sent = []  # (topic, payload, qos, retain)
        self.subs = []
        self.gated = False
        self.inflight = 0
        self.max_inflight = 0
        self.pubacks = 0  # PUBACKs the test has granted

    async def publish(self, topic, payload, qos=1, retain=False):
        self.sent.append((topic, bytes(payload), qos, retain))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        n = len(self.sent)
        if self.gated:
            await _until(lambda: self.pubacks >= n, 100000)
        self.inflight -= 1

    async def subscribe(self, topic, qos=1):
        self.subs.append((topic, qos))

    async def run(self):
        await asyncio.sleep(0)

    def up(self, uplink_obj):
        self.connected = True
        uplink_obj.on_status(True)

    def down(self, uplink_obj):
        self.connected = False
        uplink_obj.on_status(False)


class Codes:
    def __init__(self):
        self.revision = 7
        self.damaged = False
        self.n = 3

    def count(self):
        return self.n


class Doors:
    def __init__(self, n):
        self.states = [0] * n
        self.parcels = [True] * n

    def state(self, i):
        return self.states[i]

    def has_parcel(self, i):
        return self.parcels[i]


class Locker:
    def __init__(self, d):
        self.labels = ["A1", "A2"]
        self.codes = Codes()
        self.doors = Doors(2)
        self.outbox = outbox.Outbox(directory=d + "/outbox", capacity=50)
        self.outbox.load()
        self.notify = None
        self.recorded = []

    def record(self, kind, door, extra, now_ms, to_host=True):
        ev = {"k": kind, "t": None}
        if extra:
            ev.update(extra)
        self.recorded.append(ev)
        self.outbox.put(json.dumps(ev).encode())
        if self.notify is not None:
            self.notify()


class Cfg:
    locker_id = LID


class Runtime:
    def __init__(self, safe=False):
        self.cfg = Cfg()
        self.key = KEY
        self.clock = Wall()
        self.fw = "0.1.0"
        self.started_ms = 0
        self.locker = None if safe else Locker(fakes.scratch_dir("uplink"))

    def uptime_ms(self, now_ms):
        return now_ms - self.started_ms


class Commands:
    """commands.handle's contract: a reply dict or None; `ack` acts on the outbox, no reply."""

    def __init__(self, rt):
        self.rt = rt
        self.calls = []
        self.ticks = 0
        self.status_due = False  # set by handle() on an authentic command refused as expired

    def handle(self, wire, now_ms, retained=False):
        self.calls.append((bytes(wire), now_ms, retained))
        cmd = json.loads(bytes(wire))
        if retained:
            return None
        if cmd["op"] == "late":  # stands for a command refused as expired
            self.status_due = True
            return None
        if cmd["op"] == "ack":
            for s in cmd["seqs"]:
                self.rt.locker.outbox.ack(s)
            return None
        return {"v": 1, "lid": LID, "tx": cmd.get("tx"), "cseq": cmd.get("seq"), "ok": True}

    def tick(self, now_ms):
        self.ticks += 1

    def status(self, now_ms):  # the real one: locker.commands.Commands.status
        lk = self.rt.locker
        cs = lk.codes if lk is not None else None
        return {
            "v": 1,
            "lid": LID,
            "online": True,
            "mode": "normal" if lk is not None else "safe",
            "fw": self.rt.fw,
            "rev": cs.revision if cs is not None else 0,
            "snap": cs.damaged if cs is not None else False,
            "codes": cs.count() if cs is not None else 0,
            "outbox": len(lk.outbox) if lk is not None else 0,
            "t": self.rt.clock.now(now_ms),
            "up": now_ms // 1000,
            "heap": 1,
        }


NET = {"wifi": None, "broker": {"host": "127.0.0.1", "port": 1883, "tls": False, "user": LID, "password": "pw"}}


def _make(safe=False):
    rt = Runtime(safe)
    clock = Clock()
    cmds = Commands(rt)
    up = uplink.Uplink(rt, NET, cmds=cmds, client_cls=FakeClient, now_ms=clock)
    up.tick_ms = 0
    return rt, clock, cmds, up, up.client


def _opened(wire):
    return json.loads(protocol.open_signed(HKEY, wire))


def _events(client):
    return [_opened(p) for t, p, q, r in client.sent if t == "lockers/%s/events" % LID]


def _put(rt, n):
    return [rt.locker.outbox.put(b'{"k":"pickup","n":%d}' % i) for i in range(n)]


def _drain_events(up, clock):
    """Publish what next_event() offers, as the events task does (PUBACK at once)."""
    out = []
    while True:
        item = up.next_event(clock())
        if item is None:
            return out
        up.client.sent.append((up.t_events, item[1], 1, False))
        up.event_sent(item[0])
        out.append(item[0])


# --- the client's set-up ------------------------------------------------------------------------


def test_client_settings_and_signed_will():
    rt, clock, cmds, up, c = _make()
    assert c.client_id == LID
    assert c.kw["user"] == LID and c.kw["password"] == "pw"
    assert c.kw["max_packet"] == 8192
    assert c.kw["keepalive_s"] == 30
    topic, payload, qos, retain = c.kw["will"]
    assert topic == "lockers/hall-1/status" and qos == 1 and retain
    will = _opened(payload)
    assert will["online"] is False and will["lid"] == LID
    assert rt.locker.notify == up.notify


def test_run_subscribes_to_cmd_only():
    rt, clock, cmds, up, c = _make()

    async def main():
        await up.run()

    _run(main())
    assert c.subs == [("lockers/hall-1/cmd", 1)]


# --- events -------------------------------------------------------------------------------------


def test_nothing_goes_before_connect():
    rt, clock, cmds, up, c = _make()
    _put(rt, 2)
    assert up.next_event(clock()) is None
    assert up.next_control(clock()) is None


def test_events_oldest_first_one_at_a_time_signed():
    rt, clock, cmds, up, c = _make()
    seqs = _put(rt, 3)
    c.gated = True

    async def main():
        c.up(up)
        task = asyncio.create_task(up.events_task())
        for i in range(3):
            await _until(lambda: len(_events(c)) == i + 1)
            for _ in range(50):  # the task stays on the unacknowledged one
                await asyncio.sleep(0)
            assert len(_events(c)) == i + 1 and c.inflight == 1
            c.pubacks = len(c.sent)
        await _until(lambda: c.inflight == 0)
        task.cancel()

    _run(main())
    evs = _events(c)
    assert [e["seq"] for e in evs] == seqs
    assert evs[0]["ev"] == {"k": "pickup", "n": 0} and evs[0]["lid"] == LID
    assert c.max_inflight == 1
    assert len(rt.locker.outbox) == 3  # a PUBACK frees the next, it removes nothing


def test_ack_command_removes_events_and_resets_the_timeout():
    rt, clock, cmds, up, c = _make()
    seqs = _put(rt, 3)
    c.up(up)
    assert _drain_events(up, clock) == seqs
    up.resend_ms = 120000
    ack = {"v": 1, "lid": LID, "seq": 5, "op": "ack", "seqs": seqs[:2]}
    assert up.on_message("lockers/hall-1/cmd", protocol.encode(ack), False) is None
    assert len(rt.locker.outbox) == 1
    assert up.resend_ms == 30000
    assert up.replies == []  # an ack has no reply


def test_new_event_goes_at_once():
    rt, clock, cmds, up, c = _make()
    c.up(up)
    assert _drain_events(up, clock) == []
    rt.locker.record("opened", 0, None, clock())
    s = _drain_events(up, clock)
    assert len(s) == 1 and _events(c)[-1]["ev"]["k"] == "opened"


def test_resent_after_reconnect():
    rt, clock, cmds, up, c = _make()
    seqs = _put(rt, 3)
    c.up(up)
    assert _drain_events(up, clock) == seqs
    c.down(up)
    assert up.next_event(clock()) is None  # offline: nothing
    c.up(up)
    assert _drain_events(up, clock) == seqs  # all of them again, oldest first


def test_reconnect_during_a_publish_restarts_from_the_oldest():
    rt, clock, cmds, up, c = _make()
    seqs = _put(rt, 3)
    c.up(up)
    first = up.next_event(clock())
    c.down(up)
    c.up(up)  # the client resends the unacknowledged publish itself; then PUBACK
    up.event_sent(first[0])
    assert _drain_events(up, clock) == seqs


def test_resend_timeout_doubles_to_ten_minutes_and_resets_on_ack():
    rt, clock, cmds, up, c = _make()
    seqs = _put(rt, 2)
    c.up(up)
    assert _drain_events(up, clock) == seqs
    waits = []
    for _ in range(7):
        wait = up.resend_ms
        waits.append(wait)
        clock.ms += wait - 1
        assert up.next_event(clock()) is None
        clock.ms += 1
        assert _drain_events(up, clock) == seqs
    assert waits == [30000, 60000, 120000, 240000, 480000, 600000, 600000]
    ack = {"v": 1, "lid": LID, "seq": 9, "op": "ack", "seqs": [seqs[0]]}
    up.on_message("lockers/hall-1/cmd", protocol.encode(ack), False)
    assert up.resend_ms == 30000
    clock.ms += 30000
    assert _drain_events(up, clock) == seqs[1:]


def test_empty_outbox_sends_nothing_and_no_resend():
    rt, clock, cmds, up, c = _make()
    c.up(up)
    clock.ms += 3600000
    assert up.next_event(clock()) is None
    assert _events(c) == []


# --- status, doors, replies ---------------------------------------------------------------------


def _control(up, clock):
    out = []
    while True:
        item = up.next_control(clock())
        if item is None:
            return out
        out.append((item[0].split("/")[-1], _opened(item[1]), item[2]))


def test_status_on_connect_on_change_and_every_five_minutes():
    rt, clock, cmds, up, c = _make()
    _put(rt, 2)
    clock.ms += 1500
    c.up(up)
    out = _control(up, clock)
    kinds = [k for k, m, r in out]
    assert kinds == ["status", "doors"]
    st = out[0][1]
    assert out[0][2] is True  # retained
    assert st["v"] == 1 and st["lid"] == LID and st["online"] is True and st["mode"] == "normal"
    assert st["rev"] == 7 and st["snap"] is False and st["codes"] == 3 and st["outbox"] == 2
    assert st["fw"] == "0.1.0" and st["t"] == 1795600002 and st["up"] == 2
    assert _control(up, clock) == []
    rt.locker.codes.revision = 8
    out = _control(up, clock)
    assert [k for k, m, r in out] == ["status"] and out[0][1]["rev"] == 8
    rt.locker.codes.damaged = True
    out = _control(up, clock)
    assert out[0][1]["snap"] is True
    clock.ms += 299999
    assert [k for k, m, r in _control(up, clock)] == []
    clock.ms += 1
    assert [k for k, m, r in _control(up, clock)] == ["status"]
    c.down(up)
    c.up(up)
    assert [k for k, m, r in _control(up, clock)] == ["status", "doors"]


def test_a_command_refused_as_expired_brings_the_status_at_once():
    # The host's command came too late by the locker's clock: the status (its clock, a fresh clock
    # challenge) goes now, not in 5 minutes, so the host can set the clock right.
    rt, clock, cmds, up, c = _make()
    c.up(up)
    clock.ms += 1500
    assert [k for k, m, r in _control(up, clock)] == ["status", "doors"]
    assert _control(up, clock) == []
    up.on_message("lockers/hall-1/cmd", protocol.encode({"v": 1, "lid": LID, "seq": 1, "op": "late"}), False)
    assert not cmds.status_due
    assert [k for k, m, r in _control(up, clock)] == ["status"]
    assert _control(up, clock) == []


def test_doors_snapshot_on_change_at_most_once_a_second():
    rt, clock, cmds, up, c = _make()
    clock.ms += 1000
    c.up(up)
    out = _control(up, clock)
    doors = out[1][1]
    assert out[1][0] == "doors" and out[1][2] is True
    assert doors["doors"] == [{"d": "A1", "s": "locked", "full": True}, {"d": "A2", "s": "locked", "full": True}]
    rt.locker.doors.states[1] = 2  # open
    clock.ms += 200
    assert _control(up, clock) == []  # within the second
    rt.locker.doors.parcels[1] = False
    clock.ms += 800
    out = _control(up, clock)
    assert [k for k, m, r in out] == ["doors"]
    assert out[0][1]["doors"][1] == {"d": "A2", "s": "open", "full": False}
    clock.ms += 5000
    assert _control(up, clock) == []  # no change, nothing


def test_replies_queued_from_on_message_and_sent_in_order():
    rt, clock, cmds, up, c = _make()
    c.up(up)
    _control(up, clock)
    for i in range(6):
        cmd = {"v": 1, "lid": LID, "seq": 100 + i, "tx": "t%d" % i, "op": "status"}
        r = up.on_message("lockers/hall-1/cmd", bytearray(protocol.encode(cmd)), False)
        assert r is None  # on_message is a plain function: nothing to await
    assert up.dropped_replies == 2  # a small bounded queue; the host re-sends by tx
    out = _control(up, clock)
    assert [m["tx"] for k, m, r in out] == ["t0", "t1", "t2", "t3"]
    assert all(k == "reply" and r is False for k, m, r in out)


def test_on_message_is_synchronous_and_passes_retained():
    rt, clock, cmds, up, c = _make()
    cmd = protocol.encode({"v": 1, "lid": LID, "seq": 1, "tx": "x", "op": "time"})
    r = up.on_message("lockers/hall-1/cmd", cmd, True)
    assert r is None and not hasattr(r, "send")
    assert cmds.calls[-1][2] is True
    assert up.replies == []
    up.on_message("lockers/other/cmd", cmd, False)  # not ours: not even looked at
    assert len(cmds.calls) == 1


def test_a_command_that_raises_does_not_escape():
    rt, clock, cmds, up, c = _make()
    up.on_message("lockers/hall-1/cmd", b"not json", False)  # the fake handler raises
    assert up.replies == []


def test_commands_tick_every_few_seconds():
    rt, clock, cmds, up, c = _make()
    up.next_control(clock())
    assert cmds.ticks == 0
    clock.ms += 2000
    up.next_control(clock())
    up.next_control(clock())
    assert cmds.ticks == 1


def test_oversized_messages_reported_as_refused_events():
    rt, clock, cmds, up, c = _make()
    clock.ms += 10000
    c.stats["oversized"] = 2
    up.next_control(clock())
    assert rt.locker.recorded == [{"k": "refused", "t": None, "r": "too_large", "op": None, "n": 2}]
    c.stats["oversized"] = 3
    clock.ms += 5000
    up.next_control(clock())
    assert len(rt.locker.recorded) == 1  # at most one per 10 s
    clock.ms += 5000
    up.next_control(clock())
    assert rt.locker.recorded[-1]["n"] == 1


def test_control_task_publishes_with_qos1():
    rt, clock, cmds, up, c = _make()

    async def main():
        c.up(up)
        task = asyncio.create_task(up.control_task())
        await _until(lambda: len(c.sent) >= 1)
        task.cancel()

    _run(main())
    topic, payload, qos, retain = c.sent[0]
    assert topic == "lockers/hall-1/status" and qos == 1 and retain


# --- safe mode ----------------------------------------------------------------------------------


def test_safe_mode_status_and_commands():
    rt, clock, cmds, up, c = _make(safe=True)
    c.up(up)
    out = _control(up, clock)
    assert [k for k, m, r in out] == ["status"]
    st = out[0][1]
    assert st["mode"] == "safe" and st["rev"] == 0 and st["outbox"] == 0 and st["codes"] == 0
    assert up.next_event(clock()) is None
    cmd = protocol.encode({"v": 1, "lid": LID, "seq": 3, "tx": "s", "op": "status"})
    up.on_message("lockers/hall-1/cmd", cmd, False)
    assert [k for k, m, r in _control(up, clock)] == ["reply"]


def test_news_wakes_the_tasks_at_once_without_the_ticker():
    # No ticker runs and the tick is an hour: only the wake-ups can get these out.
    rt, clock, cmds, up, c = _make()
    up.tick_ms = 3600000

    async def main():
        c.up(up)
        tasks = [asyncio.create_task(up.control_task()), asyncio.create_task(up.events_task())]
        await _until(lambda: any(t.endswith("/status") for t, p, q, r in c.sent))
        for _ in range(20):  # both tasks idle on their events now
            await asyncio.sleep(0)
        cmd = {"v": 1, "lid": LID, "seq": 100, "tx": "w1", "op": "status"}
        up.on_message("lockers/hall-1/cmd", protocol.encode(cmd), False)
        await _until(lambda: any(t.endswith("/reply") for t, p, q, r in c.sent))
        rt.locker.outbox.put(b'{"k":"boot"}')
        up.notify()
        await _until(lambda: len(_events(c)) == 1)
        for t in tasks:
            t.cancel()

    _run(main())
    assert _events(c)[0]["ev"] == {"k": "boot"}
