"""Fuzzing the locker's update staging (locker.update, CPython): whatever manifest a holder of signed
commands sends (paths and hashes of any characters, newlines and `|` included, sizes, versions),
signed over the very text the locker writes so the staging gets as far as it can, then chunks for the
manifest's paths and for paths of its own, a commit and an abort: no file outside app.new/ is ever
written or removed, except app.swap by a commit that answered ok.

Every example runs the real module against a fresh scratch folder made the current directory (the
firmware's paths are relative to the filesystem's root). The cases that also run under MicroPython
are in tests/maint/fw_cases.py.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from base64 import b64encode
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from locker import maint
from locker.hmac256 import HmacKey

KEY = b"update fuzz test key: 32 bytes!!"
# The root of a provisioned board: what an update must never touch.
ROOT_FILES = {
    "locker.key": KEY,
    "net.json": b'{"broker": {"password": "p"}}',
    "throttle.bin": b"\x00\x01",
    "boot.py": b"# loader",
    "app/app.json": b'{"version": "1.0", "files": []}',
    "app/locker/x.mpy": b"old x",
}


class FakeRt:
    key = KEY
    board = None
    locker = None


@contextmanager
def _flash() -> Iterator[Path]:
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="update-fuzz-") as d:
        root = Path(d)
        for rel, data in ROOT_FILES.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(cwd)


def _outside(root: Path) -> dict[str, bytes]:
    """Every file outside app.new/, with its bytes."""
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not (rel == "app.new" or rel.startswith("app.new/")):
            out[rel] = p.read_bytes()
    return out


NASTY = ["..", ".", "/", "\n", "\r", "|", "\\", "\x00", " ", "~", "é", "\u2028", "app.new", "../", "//"]
segment = st.one_of(
    st.sampled_from(["locker", "hal", "x.mpy", "app.json", "app.lst", "app.mac", "..", ".", "a-b_c.d"]),
    st.lists(st.sampled_from(list("abcXYZ019_-.") + NASTY), max_size=6).map("".join),
)
path = st.one_of(
    st.lists(segment, min_size=1, max_size=5).map("/".join),
    st.sampled_from(["../locker.key", "/net.json", "../throttle.bin", "locker/../../boot.py", "app.new/../x"]),
    st.text(max_size=70),
)
hexdigits = st.text(alphabet="0123456789abcdefABCDEF", min_size=64, max_size=64)
# Paths out of app.new/ that a manifest line smuggled in through a hash would name.
ESCAPES = ["../locker.key", "../throttle.bin", "../app/locker/x.mpy", "/net.json"]
injected = st.builds(
    lambda head, p, size: (head + "\n" + p + "|" + str(size) + "|").ljust(64, "0")[:64],
    st.text(alphabet="0123456789abcdef", max_size=4),
    st.sampled_from(ESCAPES + ["x|y"]),
    st.integers(0, 40),
)


VALID_PATHS = ["locker/a.mpy", "locker/b.mpy", "hal/c.mpy", "d.mpy", "locker/sub/e.mpy", "f-g_h.json"]


@st.composite
def entry(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """Mostly a well-formed file (so the staging gets far), else a path, size or hash of any kind."""
    data = draw(st.binary(max_size=40))
    good = hashlib.sha256(data).hexdigest()
    kind = draw(st.integers(0, 99))
    if kind < 70:
        return {"path": draw(st.sampled_from(VALID_PATHS)), "size": len(data), "sha256": good}, data
    if kind < 85:  # a well-formed file whose "hash" carries manifest lines of its own
        return {"path": draw(st.sampled_from(VALID_PATHS)), "size": len(data), "sha256": draw(injected)}, data
    sha = draw(st.one_of(st.just(good), hexdigits, injected, st.text(min_size=60, max_size=66)))
    size = draw(st.one_of(st.just(len(data)), st.integers(-1, 300)))
    return {"path": draw(st.one_of(st.sampled_from(VALID_PATHS), path)), "size": size, "sha256": sha}, data


def _signed_begin_args(version: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The begin message signed over the text the locker writes for `rows` (as a signed command's
    holder could), with the size the locker will add up from that text where it can be read."""
    lines = "".join(f"{r['path']}|{r['size']}|{str(r['sha256']).lower()}\n" for r in rows)
    text = f"app|{version}\n" + lines
    size = 0
    for line in text.split("\n")[1:]:
        parts = line.split("|")
        if len(parts) == 3 and parts[1].isdigit():
            size += int(parts[1])
    sig = HmacKey(KEY).digest(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()).hex()
    return {"version": version, "count": len(rows), "size": size, "files": rows[:16], "sig": sig}


def _run(op: str, args: dict[str, Any]) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = maint.run(FakeRt(), op, args, 1000)
    except (ValueError, TypeError, KeyError, IndexError, OSError, UnicodeError):
        return None  # the command dispatcher answers these as errors
    return result


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.sampled_from(["2.0", "2.0", "2.0", None]).flatmap(lambda v: st.just(v) if v else st.text(max_size=18)),
    rows=st.lists(entry(), min_size=1, max_size=8, unique_by=lambda e: str(e[0]["path"])),
    extra=st.lists(path, max_size=4),
    commit=st.booleans(),
)
def test_no_manifest_writes_or_removes_a_file_outside_app_new(
    version: str, rows: list[tuple[dict[str, Any], bytes]], extra: list[str], commit: bool
) -> None:
    with _flash() as root:
        before = _outside(root)
        manifest = [r for r, _ in rows]
        args = _signed_begin_args(version, manifest)
        begun = _run("app.begin", args) or {}
        event("begin ok" if begun.get("ok") else "begin refused")
        for i in range(16, len(manifest), 16):
            _run("app.files", {"files": manifest[i : i + 16]})
        chunks = [(r["path"], data) for r, data in rows] + [(p, b"evil") for p in extra + ESCAPES]
        for p, data in chunks:
            _run("app.chunk", {"path": p, "off": 0, "data": b64encode(data).decode()})
        _run("app.status", {})
        committed = commit and (_run("app.commit", {"reboot": False}) or {}).get("ok") is True
        if committed:
            event("committed")
        after = _outside(root)
        if committed:
            assert after.pop("app.swap", None) is not None
        assert after == before
        if not committed:
            _run("app.abort", {})
            assert _outside(root) == before and not (root / "app.new").exists()
