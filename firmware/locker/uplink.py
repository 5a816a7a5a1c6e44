# The locker's link to the host (docs/protocol.md): one MQTT connection, kept up by locker.mqtt.
#
# Two publisher tasks, so a PUBACK awaited for one message never holds up the other kind:
# - events: the outbox on flash, oldest first, one at a time (the PUBACK frees the next). An event
#   stays on flash until the host's `ack`; all unacknowledged ones go again on every connect and
#   after a resend timeout (30 s, doubling to 10 min while nothing is acknowledged).
# - control: the retained status (on connect, on a change of rev/mode/snap, every 5 min), command
#   replies, and the retained doors snapshot (on a change, at most once a second).
# Commands arrive in on_message, called by the client's reader: it must not await anything the
# reader delivers (a PUBACK), so it runs the command synchronously and queues the reply.
# Idle, the tasks poll a few attributes every _TICK_MS and allocate nothing. They are not watched
# by the supervisor: waiting for a broker is normal. The keepalive and timeouts are their liveness.
from micropython import const

from locker import protocol
from locker.ticks import ticks_add, ticks_diff, ticks_ms

try:
    from asyncio import sleep_ms as _sleep_ms
except ImportError:  # CPython (tests)
    import asyncio as _aio

    def _sleep_ms(ms):
        return _aio.sleep(ms / 1000)


_TICK_MS = const(100)
_RESEND_MS = const(30000)
_RESEND_MAX_MS = const(600000)
_STATUS_MS = const(300000)
_DOORS_MIN_MS = const(1000)
_CMDS_TICK_MS = const(2000)
_REPORT_MS = const(10000)  # at most one `refused: too_large` event per 10 s, with a count
_MAX_IN = const(8192)  # largest packet from the host
_REPLIES = const(4)  # replies waiting to go; beyond that they are dropped (the host re-sends by tx)


async def _idle(wake):
    # Cleared after the wait, then the caller looks again: a set() in between is never lost.
    await wake.wait()
    wake.clear()


def _log(*parts):
    print("log| net", *parts)


class Uplink:
    def __init__(self, rt, net, cmds=None, client_cls=None, now_ms=None):
        from locker.hmac256 import HmacKey

        self.rt = rt
        self.net = net
        self.now = now_ms or ticks_ms
        self.tick_ms = _TICK_MS
        lid = rt.cfg.locker_id
        self.lid = lid
        self.hkey = HmacKey(rt.key)
        if cmds is None:
            from locker import commands

            cmds = commands.get(rt)
        self.cmds = cmds
        self.t_cmd = protocol.topic(lid, "cmd")
        self.t_status = protocol.topic(lid, "status")
        self.t_doors = protocol.topic(lid, "doors")
        self.t_events = protocol.topic(lid, "events")
        self.t_reply = protocol.topic(lid, "reply")
        if client_cls is None:
            from locker.mqtt import Client as client_cls
        b = net["broker"]
        # The will is signed once, at boot: the broker sends it for us when we vanish.
        will = (self.t_status, protocol.sign(self.hkey, protocol.will_payload(lid)), 1, True)
        self.client = client_cls(
            self._open,
            lid,
            keepalive_s=net.get("keepalive", 30),
            will=will,
            user=b.get("user"),
            password=b.get("password"),
            max_packet=_MAX_IN,
            on_message=self.on_message,
            on_status=self.on_status,
            now_ms=self.now,
        )
        now = self.now()
        # events
        self._sent = 0  # highest seq published (PUBACKed) in this round
        self._restart = False  # set on connect: the next round starts from the oldest event
        self._news = True  # the outbox may hold something above _sent (set by Locker.notify)
        self._last_send = now
        self.resend_ms = _RESEND_MS
        # Wake-ups: a task with nothing to send waits on its event. Set by news (an event recorded,
        # a reply queued, a connect) and by the ticker every tick_ms for the timed chores. Waiting
        # on an event allocates nothing, and news goes out at once instead of on the next tick.
        import asyncio

        self._wake_events = asyncio.Event()
        self._wake_control = asyncio.Event()
        # control
        self.replies = []
        self.dropped_replies = 0
        self._status_due = True
        self._status_at = now
        self._rev = -1
        self._snap = False
        self._doors_due = True
        self._doors_at = now
        self._dsnap = None  # per door: state * 4 + parcel (0 none, 1 empty, 2 full)
        self._cmds_at = now
        self._oversized = 0
        self._error = None
        self._reported_at = ticks_add(now, -_REPORT_MS)
        lk = rt.locker
        if lk is not None:
            lk.notify = self.notify
            self._dsnap = bytearray(len(lk.labels))

    # --- the connection ---------------------------------------------------------------------

    async def _open(self):
        from hal import net as hnet

        n = self.net
        b = n["broker"]
        wifi = n.get("wifi")
        if wifi:
            await hnet.wifi_up(wifi["ssid"], wifi.get("password"))
        elif n.get("lan"):
            await hnet.lan_up(n["lan"])
        try:
            return await hnet.open_connection(b["host"], b["port"], b["tls"], n.get("ca_der"), b.get("server_hostname"))
        except Exception:
            hnet.forget(b["host"])
            raise

    def on_status(self, up):
        if up:
            self._restart = True  # everything not acknowledged goes again, oldest first
            self._news = True
            self._status_due = True
            self._doors_due = True
            self._wake_events.set()
            self._wake_control.set()
            _log("up")
        else:
            _log("down")

    def notify(self):
        """Locker.record() calls this after an event went into the outbox."""
        self._news = True
        self._wake_events.set()

    def on_message(self, topic, payload, retained):
        """From the client's reader: synchronous on purpose (see the header)."""
        if topic != self.t_cmd:
            return
        lk = self.rt.locker
        n = len(lk.outbox) if lk is not None else 0
        now = self.now()
        try:
            reply = self.cmds.handle(payload, now, retained)
        except Exception as exc:  # a command that breaks must not take the connection down
            _log("command failed:", repr(exc))
            return
        if lk is not None and len(lk.outbox) < n:
            self.acked()
        if self.cmds.status_due:  # the host's command came too late by our clock: show it our clock
            self.cmds.status_due = False
            self._status_due = True
            self._wake_control.set()
        if reply is not None:
            if len(self.replies) >= _REPLIES:
                self.dropped_replies += 1
                return
            self.replies.append(protocol.sign(self.hkey, protocol.encode(reply)))
            self._wake_control.set()

    def acked(self):
        """The host acknowledged something: the resend timeout starts again from 30 s."""
        self.resend_ms = _RESEND_MS
        self._last_send = self.now()

    # --- events -----------------------------------------------------------------------------

    def next_event(self, now):
        """The next event to publish as (seq, wire), or None (nothing, or not connected yet).
        Allocates nothing when there is nothing to send."""
        if self._restart:
            self._restart = False
            self._sent = 0
            self._news = True
        lk = self.rt.locker
        if lk is None or not self.client.connected:
            return None
        ob = lk.outbox
        if not len(ob):
            self._last_send = now  # the timeout counts from the last send, not from idle time
            return None
        if not self._news:
            if ticks_diff(now, self._last_send) < self.resend_ms:
                return None
            # The host has not acknowledged what we sent: send it all again, and wait longer next.
            self._sent = 0
            self._news = True
            self.resend_ms = min(self.resend_ms * 2, _RESEND_MAX_MS)
            _log("resend; next in", self.resend_ms // 1000, "s")
        item = ob.after(self._sent)
        if item is None:
            self._news = False
            return None
        seq = item[0]
        return seq, protocol.sign(self.hkey, protocol.event_payload(self.lid, seq, item[1]))

    def event_sent(self, seq):
        self._sent = seq
        self._last_send = self.now()

    async def events_task(self):
        c = self.client
        while True:
            item = self.next_event(self.now())
            if item is None:
                await _idle(self._wake_events)
                continue
            await c.publish(self.t_events, item[1], 1, False)  # returns on PUBACK, across reconnects
            self.event_sent(item[0])

    # --- status, replies, doors ---------------------------------------------------------------

    def status_wire(self, now):
        # The same fields as the `status` command's reply: one definition, in locker.commands.
        return protocol.sign(self.hkey, protocol.encode(self.cmds.status(now)))

    def doors_wire(self, now):
        from locker import doors as D

        lk = self.rt.locker
        ds = lk.doors
        doors = []
        for i in range(len(lk.labels)):
            doors.append({"d": lk.labels[i], "s": D.name_of_state(ds.state(i)), "full": ds.has_parcel(i)})
        obj = {"v": protocol.VERSION, "lid": self.lid, "t": self.rt.clock.now(now), "doors": doors}
        return protocol.sign(self.hkey, protocol.encode(obj))

    def _doors_changed(self):
        snap = self._dsnap
        ds = self.rt.locker.doors
        changed = False
        for i in range(len(snap)):
            p = ds.has_parcel(i)
            v = ds.state(i) * 4 + (0 if p is None else 2 if p else 1)
            if snap[i] != v:
                snap[i] = v
                changed = True
        return changed

    def next_control(self, now):
        """The next (topic, wire, retain) to publish, or None. Also the periodic chores (the
        commands' tick, reporting skipped oversized messages). Allocates nothing when idle."""
        if ticks_diff(now, self._cmds_at) >= _CMDS_TICK_MS:
            self._cmds_at = now
            self.cmds.tick(now)
        c = self.client
        lk = self.rt.locker
        if lk is not None:
            if self._dsnap is not None and self._doors_changed():
                self._doors_due = True
            n = c.stats["oversized"]
            if n != self._oversized and ticks_diff(now, self._reported_at) >= _REPORT_MS:
                self._reported_at = now
                lk.record("refused", None, {"r": protocol.TOO_LARGE, "op": None, "n": n - self._oversized}, now)
                self._oversized = n
        e = c.last_error
        if e is not self._error:  # each new failure once (a wrong CA, a refused password...)
            self._error = e
            if e is not None:
                _log("error:", repr(e))
        if not c.connected:
            return None
        if self.replies:  # first: the host is waiting for it; the status is for the record
            return self.t_reply, self.replies.pop(0), False
        codes = lk.codes if lk is not None else None
        if codes is not None and (codes.revision != self._rev or bool(getattr(codes, "damaged", False)) != self._snap):
            self._status_due = True
        if self._status_due or ticks_diff(now, self._status_at) >= _STATUS_MS:
            self._status_due = False
            self._status_at = now
            if codes is not None:
                self._rev = codes.revision
                self._snap = bool(getattr(codes, "damaged", False))
            return self.t_status, self.status_wire(now), True
        if self._doors_due and lk is not None and ticks_diff(now, self._doors_at) >= _DOORS_MIN_MS:
            self._doors_due = False
            self._doors_at = now
            return self.t_doors, self.doors_wire(now), True
        return None

    async def control_task(self):
        c = self.client
        while True:
            item = self.next_control(self.now())
            if item is None:
                await _idle(self._wake_control)
                continue
            await c.publish(item[0], item[1], 1, item[2])

    async def ticker_task(self):
        """The timed chores (resends, status every 5 min, door changes, the commands' tick)."""
        while True:
            await _sleep_ms(self.tick_ms)
            self._wake_events.set()
            self._wake_control.set()

    # --- life ---------------------------------------------------------------------------------

    async def run(self):
        import asyncio

        c = self.client
        await c.subscribe(self.t_cmd, 1)  # kept by the client: resubscribed on every connect
        asyncio.create_task(self.ticker_task())
        asyncio.create_task(self.events_task())
        asyncio.create_task(self.control_task())
        await c.run()
