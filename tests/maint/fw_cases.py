# The firmware's maintenance modules (locker.maint, locker.update) and the loader (boot.py), as plain
# test functions that run under CPython (tests/maint/test_maint_unit.py) and under MicroPython with a
# board-sized heap (tests/maint/test_maint_micropython.py). Each test works in a scratch directory
# made the current one: the firmware uses paths relative to the filesystem's root.
import hashlib
import json
import os
import sys
from binascii import b2a_base64, hexlify

import fakes
from locker import maint
from locker.hmac256 import HmacKey

KEY = b"\x11" * 32


class _Keys:
    keys = "123A456B789C*0#D"


class FakeRt:
    def __init__(self, safe=None):
        self.key = KEY
        self.locker = None
        self.board = _Keys()
        self.safe_reason = safe
        self.trial = None
        self.fw = "0.1.0"
        self.reset_cause = "watchdog"

    def uptime_ms(self, now):
        return now


class FakeLocker:
    key_echo_until = 0


def _fresh(name):
    d = fakes.scratch_dir(name)
    os.chdir(d)
    return d


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _sha(data):
    return hexlify(hashlib.sha256(data).digest()).decode()


def _install_v1():
    """An installed application 1.0 (as provisioning leaves it)."""
    os.mkdir("app")
    os.mkdir("app/locker")
    _write("app/locker/x.mpy", b"old x")
    _write("app/app.json", json.dumps({"version": "1.0", "files": []}).encode())


FILES = {"locker/x.mpy": b"new x " * 300, "hal/y.mpy": b"why" * 11, "locker/z.mpy": b""}


def _manifest(files=FILES):
    return [{"path": p, "size": len(d), "sha256": _sha(d)} for p, d in files.items()]


def _sig(version, man, key=KEY):
    text = "app|%s\n" % version + "".join("%s|%d|%s\n" % (f["path"], f["size"], f["sha256"]) for f in man)
    return hexlify(HmacKey(key).digest(hashlib.sha256(text.encode()).digest())).decode()


def _run(rt, op, args):
    return maint.run(rt, op, args, 1000)


def _begin(rt, version="2.0", files=FILES, sig=True, split=1):
    man = _manifest(files)
    args = {"version": version, "count": len(man), "size": sum(f["size"] for f in man), "files": man[:split]}
    if sig:
        args["sig"] = _sig(version, man) if sig is True else sig
    r = _run(rt, "app.begin", args)
    if not r["ok"] or split >= len(man):
        return r
    return _run(rt, "app.files", {"files": man[split:]})


def _send(rt, files=FILES, size=100):
    for p, data in files.items():
        for off in range(0, len(data), size):
            r = _run(rt, "app.chunk", {"path": p, "off": off, "data": b2a_base64(data[off : off + size]).decode()})
            if not r["ok"]:
                return r
    return {"ok": True}


# --- diag ------------------------------------------------------------------------------------------


def test_diag_in_safe_mode_has_every_field():
    _fresh("diag")
    rt = FakeRt(safe="3 failed boots in a row")
    r = _run(rt, "diag", {})
    assert r["ok"]
    d = r["diag"]
    for k in ("fw", "app", "heap_free", "heap_used", "up", "reset", "safe", "doors", "outbox", "lost", "codes", "rev"):
        assert k in d, k
    assert d["safe"] == "3 failed boots in a row" and d["reset"] == "watchdog" and d["up"] == 1
    assert d["app"] is None and d["doors"] == [] and d["trial"] is None and d["rollback"] is None
    _install_v1()
    _write("app.rb", b'{"from": "2.0", "to": "1.0", "n": 3}')
    d = _run(rt, "diag", {})["diag"]
    assert d["app"]["v"] == "1.0" and len(d["app"]["h"]) == 12
    assert d["rollback"] == {"from": "2.0", "to": "1.0", "n": 3}


def test_selftest_keys_sets_and_clears_the_echo():
    rt = FakeRt()
    assert _run(rt, "selftest.keys", {"on": True}) == {"ok": False, "error": "safe_mode"}
    rt.locker = FakeLocker()
    r = _run(rt, "selftest.keys", {"on": True})
    assert r["ok"] and r["keys"] == _Keys.keys and r["s"] == 120
    assert rt.locker.key_echo_until == 121000
    assert _run(rt, "selftest.keys", {"on": False})["ok"] and rt.locker.key_echo_until == 0


def test_unknown_maint_op():
    assert _run(FakeRt(), "app.nope", {}) == {"ok": False, "error": "unknown_op"}


# --- updates -------------------------------------------------------------------------------------------


def test_a_good_update_is_staged_checked_and_marked_for_the_swap():
    _fresh("upd-good")
    _install_v1()
    rt = FakeRt()
    r = _begin(rt, split=2)
    assert r == {"ok": True, "files": 3, "need": sum(len(d) for d in FILES.values())}, r
    st = _run(rt, "app.status", {})
    assert st["staged"]["ready"] and st["staged"]["have"] == 0 and st["staged"]["next"] == ["locker/x.mpy", 0]
    assert _send(rt)["ok"]
    # a re-sent chunk changes nothing; a gap is refused with what the locker has
    data = FILES["locker/x.mpy"]
    again = {"path": "locker/x.mpy", "off": 0, "data": b2a_base64(data[:100]).decode()}
    assert _run(rt, "app.chunk", again) == {"ok": True, "have": len(data)}
    assert _run(rt, "app.status", {})["staged"]["next"] in (None, ["locker/z.mpy", 0])
    r = _run(rt, "app.commit", {"reboot": False, "k": 2, "ok_s": 5})
    assert r == {"ok": True, "version": "2.0", "reboot_ms": None}, r
    swap = json.loads(_read("app.swap"))
    assert swap == {"v": "2.0", "prev": "1.0", "k": 2, "ok_s": 5, "wdt": 30000}
    man = json.loads(_read("app.new/app.json"))
    assert man["version"] == "2.0" and [f["path"] for f in man["files"]] == list(FILES)
    assert _read("app.new/locker/x.mpy") == data and _read("app/locker/x.mpy") == b"old x"
    assert sorted(os.listdir("app.new")) == ["app.json", "hal", "locker"]
    # nothing more until the loader has swapped
    assert _begin(rt)["error"] == "swap_pending"
    assert _run(rt, "app.commit", {"reboot": False})["error"] == "swap_pending"


def test_a_bad_signature_is_refused_and_nothing_stays_staged():
    _fresh("upd-sig")
    _install_v1()
    rt = FakeRt()
    wrong = _sig("2.0", _manifest(), key=b"\x22" * 32)
    assert _begin(rt, sig=wrong) == {"ok": False, "error": "bad_signature"}
    assert not _exists("app.new") and _read("app/locker/x.mpy") == b"old x"
    assert _run(rt, "app.chunk", {"path": "locker/x.mpy", "off": 0, "data": ""})["error"] == "not_staged"


def test_a_corrupt_chunk_is_refused_before_any_swap():
    _fresh("upd-corrupt")
    _install_v1()
    rt = FakeRt()
    assert _begin(rt)["ok"]
    bad = dict(FILES)
    bad["locker/x.mpy"] = FILES["locker/x.mpy"][:-1] + b"!"
    r = _send(rt, bad)
    assert r == {"ok": False, "error": "hash", "path": "locker/x.mpy"}, r
    assert not _exists("app.new/locker/x.mpy")  # the corrupt file is gone: it is sent again
    r = _run(rt, "app.commit", {"reboot": False})
    assert r["ok"] is False and r["error"] == "incomplete", r
    assert not _exists("app.swap") and _read("app/locker/x.mpy") == b"old x"
    assert _send(rt)["ok"] and _run(rt, "app.commit", {"reboot": False})["ok"]


def test_a_manifest_changed_on_flash_fails_the_commit():
    _fresh("upd-tamper")
    _install_v1()
    rt = FakeRt()
    assert _begin(rt)["ok"] and _send(rt)["ok"]
    with open("app.new/app.lst", "a") as f:
        f.write("evil.mpy|0|%s\n" % _sha(b""))
    assert _run(rt, "app.commit", {"reboot": False}) == {"ok": False, "error": "bad_signature"}
    assert not _exists("app.swap")


def test_bad_manifests_are_refused():
    _fresh("upd-args")
    _install_v1()
    rt = FakeRt()
    for path in ("../boot.py", "/boot.py", "a//b", "app.json", "a/./b", "x" * 65):
        try:
            _begin(rt, files={path: b"x"})
        except ValueError:
            continue
        raise AssertionError(path)
    man = _manifest()
    args = {"version": "2.0", "count": 3, "size": 1, "files": man, "sig": _sig("2.0", man)}
    assert _run(rt, "app.begin", args) == {"ok": False, "error": "bad_size"}
    for bad in ({"size": 10**9}, {"count": 0}, {"version": "a|b"}, {"sig": "00"}):
        args = {"version": "2.0", "count": 3, "size": 10, "files": man}
        args.update(bad)
        try:
            _run(rt, "app.begin", args)
        except ValueError:
            continue
        raise AssertionError(bad)


def _root_files():
    """Every file outside app.new/ (the scratch flash's root and its folders), with its bytes."""
    out = {}
    todo = ["."]
    while todo:
        d = todo.pop()
        for name in os.listdir(d):
            p = name if d == "." else d + "/" + name
            if p == "app.new":
                continue
            if os.stat(p)[0] & 0x4000:
                todo.append(p)
            else:
                out[p] = _read(p)
    return out


def _signed_begin(rt, version, rows):
    """app.begin with `rows` as they are, signed over the text the locker writes from them (what a
    holder of a signed command could send)."""
    text = "app|%s\n" % version + "".join("%s|%d|%s\n" % (f["path"], f["size"], f["sha256"]) for f in rows)
    sig = hexlify(HmacKey(KEY).digest(hashlib.sha256(text.encode()).digest())).decode()
    size = 0
    for line in text.split("\n")[1:]:
        if line:
            size += int(line.split("|")[1])
    args = {"version": version, "count": len(rows), "size": size, "files": rows, "sig": sig}
    return _run(rt, "app.begin", args)


def test_a_hash_with_a_newline_cannot_write_or_remove_outside_app_new():
    # A 64-character "sha256" holding a newline adds manifest lines of its own: their paths are
    # never checked as the manifest's are, and app.chunk joins them to app.new/ as they are.
    _fresh("upd-escape")
    _install_v1()
    _write("locker.key", KEY)
    rt = FakeRt()
    before = _root_files()
    inject = "\n../throttle.bin|6|"
    remove = "\n../locker.key|32|"
    rows = [
        {"path": "locker/a.mpy", "size": 0, "sha256": inject + "0" * (64 - len(inject))},
        {"path": "locker/b.mpy", "size": 0, "sha256": remove + "0" * (64 - len(remove))},
    ]
    try:
        r = _signed_begin(rt, "2.0", rows)
    except ValueError:
        r = {"ok": False}
    assert not r["ok"], r
    for path, data in (("../throttle.bin", b"zero!"), ("../locker.key", KEY)):
        r = _run(rt, "app.chunk", {"path": path, "off": 0, "data": b2a_base64(data).decode()})
        assert not r["ok"], r
    assert _root_files() == before
    # a hash of 64 characters that are not all hex digits is refused as such
    for sha in ("g" * 64, " " * 64, "0" * 63 + "|", "0" * 63 + "\n"):
        try:
            _signed_begin(rt, "2.0", [{"path": "x.mpy", "size": 0, "sha256": sha}])
        except ValueError:
            continue
        raise AssertionError(sha)
    assert _root_files() == before


def test_a_manifest_line_changed_on_flash_is_never_acted_on():
    _fresh("upd-lst")
    _install_v1()
    _write("locker.key", KEY)
    rt = FakeRt()
    assert _begin(rt)["ok"] and _send(rt)["ok"]
    before = _root_files()
    with open("app.new/app.lst", "a") as f:
        f.write("../locker.key|32|%s\n" % _sha(b"other"))
    with open("app.new/app.mac", "w") as f:  # as if the MAC were rewritten to match
        f.write(hexlify(HmacKey(KEY).digest(hashlib.sha256(_read("app.new/app.lst")).digest())).decode())
    r = _run(rt, "app.chunk", {"path": "../locker.key", "off": 0, "data": b2a_base64(KEY).decode()})
    assert r == {"ok": False, "error": "unknown_path"}, r
    for op, args in (("app.status", {}), ("app.commit", {"reboot": False})):
        try:
            r = _run(rt, op, args)
        except ValueError:
            continue
        raise AssertionError((op, r))
    assert _root_files() == before and not _exists("app.swap")


def test_no_update_while_one_is_on_trial():
    _fresh("upd-trial")
    _install_v1()
    _write("app.trial", b'{"v": "1.0", "n": 1, "k": 3}')
    assert _begin(FakeRt()) == {"ok": False, "error": "on_trial"}


def test_commit_needs_an_installed_application():
    _fresh("upd-noapp")
    rt = FakeRt()
    assert _begin(rt)["ok"] and _send(rt)["ok"]
    assert _run(rt, "app.commit", {"reboot": False}) == {"ok": False, "error": "no_app"}
    assert _run(rt, "app.abort", {}) == {"ok": True} and not _exists("app.new")


# --- a production board ---------------------------------------------------------------------------


def _ctrl_c_on():
    """Whether Ctrl-C on the console would raise KeyboardInterrupt. The unix port's kbd_intr()
    installs or removes its SIGINT handler (the "SigCgt" mask of /proc/self/status, bit 1);
    under CPython, the stand-in micropython module remembers the last kbd_intr()."""
    import micropython

    if sys.implementation.name != "micropython":
        return micropython.interrupt_char == 3
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & 2)
    raise AssertionError("no SigCgt in /proc/self/status")


class _Cfg:
    locker_id = "L1"


class ConsoleRt(FakeRt):
    """What the console and the command gate need of a runtime."""

    def __init__(self):
        from locker.clock import WallClock

        FakeRt.__init__(self)
        self.cfg = _Cfg()
        self.clock = WallClock()
        self.clock.boot(1790000000, 0)


def _wire(op, args, seq):
    from locker import protocol

    cmd = {"v": 1, "lid": "L1", "seq": seq, "now": 1790000000, "exp": 1790000300, "tx": "t%d" % seq}
    cmd.update({"op": op, "args": args})
    return protocol.sign(HmacKey(KEY), protocol.encode(cmd))


def test_a_production_board_console_admits_signed_commands_only():
    _fresh("console-prod")
    from locker import console

    got = []
    saved = console.reply
    console.reply = got.append
    try:
        rt = ConsoleRt()
        console.Console(rt).handle(b"log 5", 0)  # not a production board: the word is answered
        assert got[-1] == {"log": []}, got[-1]
        _write("production.json", b'{"production": true}')
        con = console.Console(rt)
        for line in (b"status", b"log 5", b"\x03\r\x01status", b"help"):
            con.handle(line, 0)
            assert got[-1]["ok"] is False and got[-1]["error"] == "signed_only", (line, got[-1])
        n = len(got)
        con.handle(b"", 0)
        assert len(got) == n  # an empty line (a bare Enter) gets no answer
        # a signed command is admitted, also behind what an attempt to reach the REPL left on the line
        con.handle(b"\r\x03\r\x01" + _wire("diag", {}, 1), 1000)
        assert got[-1]["ok"] is True and got[-1]["diag"]["fw"] == "0.1.0", got[-1]
        con.handle(_wire("diag", {}, 1), 1000)  # the same sequence again: refused, and said so
        assert got[-1]["ok"] is False and got[-1]["error"] == "replay", got[-1]
    finally:
        console.reply = saved


def test_repl_open_turns_ctrl_c_back_on_until_the_next_reset():
    import micropython

    micropython.kbd_intr(-1)
    try:
        assert not _ctrl_c_on()
        assert _run(FakeRt(), "repl.open", {}) == {"ok": True, "until": "reset"}
        assert _ctrl_c_on()
    finally:
        micropython.kbd_intr(3)


def test_loader_turns_ctrl_c_off_on_a_production_board_only():
    import micropython

    _fresh("boot-production")
    _install_v1()
    try:
        _loader()
        assert _ctrl_c_on()
        _write("production.json", b"")  # its presence is what counts, even empty
        _loader()
        assert not _ctrl_c_on()
    finally:
        micropython.kbd_intr(3)


# --- the loader (boot.py) --------------------------------------------------------------------------


class _FakeMachine:
    armed = []

    class WDT:
        def __init__(self, timeout=0):
            _FakeMachine.armed.append(timeout)


def _loader():
    """Run boot.py in the current directory (a scratch flash), as the board does at reset."""
    src = os.getenv("LOCKER_BOOT_PY")
    saved = sys.modules.get("machine")
    sys.modules["machine"] = _FakeMachine
    try:
        exec(_read(src).decode(), {"__name__": "boot"})
    finally:
        if saved is not None:
            sys.modules["machine"] = saved
        else:
            sys.modules.pop("machine")


def _v(d):
    return json.loads(_read(d + "/app.json"))["version"]


def _staged_v2():
    _install_v1()
    os.mkdir("app.new")
    _write("app.new/app.json", b'{"version": "2.0", "files": []}')
    _write("app.swap", b'{"v": "2.0", "prev": "1.0", "k": 2, "ok_s": 5, "wdt": 4000}')


def test_loader_swaps_then_counts_trial_boots_then_rolls_back():
    _fresh("boot-rollback")
    _staged_v2()
    _FakeMachine.armed = []
    _loader()
    assert _v("app") == "2.0" and _v("app.old") == "1.0" and not _exists("app.swap") and not _exists("app.new")
    assert json.loads(_read("app.trial"))["n"] == 1 and _FakeMachine.armed == [4000]
    _loader()  # the second (last) trial boot
    assert json.loads(_read("app.trial"))["n"] == 2
    _loader()  # never healthy: rolled back
    assert _v("app") == "1.0" and _v("app.bad") == "2.0" and not _exists("app.trial")
    assert json.loads(_read("app.rolled")) == {"from": "2.0", "to": "1.0", "n": 2}
    _loader()  # an ordinary boot: nothing changes, no watchdog armed
    assert _v("app") == "1.0" and _FakeMachine.armed == [4000, 4000]


def test_loader_keeps_a_healthy_update():
    _fresh("boot-healthy")
    _staged_v2()
    _loader()
    os.remove("app.trial")  # what locker.runtime does once healthy
    _loader()
    assert _v("app") == "2.0" and not _exists("app.rolled")


def test_loader_finishes_a_swap_cut_after_the_first_rename():
    _fresh("boot-cut-1")
    _staged_v2()
    os.rename("app", "app.old")  # cut here: app.new not renamed yet
    _loader()
    assert _v("app") == "2.0" and _v("app.old") == "1.0" and _exists("app.trial") and not _exists("app.swap")


def test_loader_finishes_a_swap_cut_after_both_renames():
    _fresh("boot-cut-2")
    _staged_v2()
    os.rename("app", "app.old")
    os.rename("app.new", "app")  # cut here: app.trial not written, app.swap still there
    _loader()
    assert _v("app") == "2.0" and _v("app.old") == "1.0" and json.loads(_read("app.trial"))["n"] == 1


def test_loader_redoes_a_swap_cut_while_removing_the_older_application():
    _fresh("boot-cut-0")
    _staged_v2()
    os.mkdir("app.old")  # half removed when the power went
    _write("app.old/leftover", b"x")
    _loader()
    assert _v("app") == "2.0" and _v("app.old") == "1.0" and not _exists("app.old/leftover")


def test_loader_finishes_a_rollback_cut_halfway():
    _fresh("boot-cut-rb")
    _staged_v2()
    _loader()
    t = json.loads(_read("app.trial"))
    t["n"] = t["k"]
    _write("app.trial", json.dumps(t).encode())
    os.rename("app", "app.bad")  # cut here, during the rollback
    _loader()
    assert _v("app") == "1.0" and _v("app.bad") == "2.0" and not _exists("app.trial") and _exists("app.rolled")


def test_staging_without_app_swap_is_left_alone():
    _fresh("boot-staging")
    _staged_v2()
    os.remove("app.swap")  # a staging not committed: the loader does not touch it
    _loader()
    assert _v("app") == "1.0" and _v("app.new") == "2.0" and not _exists("app.trial")


# --- an application in the romfs partition (MicroPython only: CPython has no vfs.VfsRom) -----------


def _rom_image(files):
    """A ROMFS image (MicroPython's extmod/vfs_rom.c format, as mpremote romfs build writes it) of a
    few small files at its root: every length below 128, so each is one byte."""
    body = b""
    for name, data in files.items():
        payload = bytes([len(name)]) + name.encode() + bytes([2, len(data)]) + data
        body += bytes([5, len(payload)]) + payload
    head = b"\xd2\xcd\x31" + (b"\x80" if (4 + len(body)) % 2 else b"") + bytes([len(body)])
    return head + body


def _with_rom(test, version="1.0"):
    """Run `test` with a romfs partition mounted at /rom holding an application's manifest, and
    sys.path as it was afterwards (the loader changes it)."""
    try:
        import vfs
    except ImportError:
        return False  # CPython
    manifest = json.dumps({"version": version, "files": []}).encode()
    vfs.mount(vfs.VfsRom(_rom_image({"app.json": manifest})), "/rom")
    path = list(sys.path)
    try:
        test()
    finally:
        sys.path[:] = path
        vfs.umount("/rom")
    return True


def test_loader_runs_the_romfs_application_when_the_filesystem_has_none():
    def check():
        _fresh("boot-rom")
        _loader()
        assert sys.path[0] == "/rom"
        assert maint.app_version()["v"] == "1.0-rom"
        _install_v1()  # an update's application on the filesystem comes first
        _loader()
        assert sys.path[0] == "app" and sys.path.count("app") == 1
        assert maint.app_version()["v"] == "1.0"

    ran = _with_rom(check, "1.0-rom")
    assert ran or sys.implementation.name != "micropython"


def test_an_update_commits_on_a_board_whose_application_is_in_romfs():
    def check():
        _fresh("upd-rom")
        rt = FakeRt()
        assert _begin(rt)["ok"] and _send(rt)["ok"]
        r = _run(rt, "app.commit", {"reboot": False})
        assert r["ok"] and r["version"] == "2.0", r
        assert json.loads(_read("app.swap"))["prev"] == "1.0-rom"

    ran = _with_rom(check, "1.0-rom")
    assert ran or sys.implementation.name != "micropython"


def test_loader_rolls_a_first_update_back_to_the_romfs_application():
    def check():
        _fresh("boot-rom-rollback")
        os.mkdir("app.new")
        _write("app.new/app.json", b'{"version": "2.0", "files": []}')
        _write("app.swap", b'{"v": "2.0", "prev": "1.0-rom", "k": 1, "ok_s": 5, "wdt": 4000}')
        _loader()  # swapped in (no app/ to keep: the previous application is the romfs one), on trial
        assert _v("app") == "2.0" and not _exists("app.old") and sys.path[0] == "app"
        _loader()  # never healthy: app/ goes, the romfs application runs again
        assert not _exists("app") and _v("app.bad") == "2.0" and not _exists("app.trial")
        assert json.loads(_read("app.rolled")) == {"from": "2.0", "to": "1.0-rom", "n": 1}
        assert sys.path[0] == "/rom"

    ran = _with_rom(check, "1.0-rom")
    assert ran or sys.implementation.name != "micropython"
