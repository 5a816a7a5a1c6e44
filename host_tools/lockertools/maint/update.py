"""Application updates: a bundle pushed to a locker, committed, and its outcome waited for."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lockertools.maint import MaintError
from lockertools.maint.bundle import AppBundle, manifest_sig
from lockertools.maint.client import Maint, require_ok

FILES_PER_MSG = 16  # manifest entries per app.begin / app.files (the firmware's limit)
CHUNK = 1024  # bytes of file data per app.chunk: ~1.4 KB of base64; small beside 8 KB messages and the heap


@dataclass
class UpdateResult:
    version: str
    outcome: str  # "healthy" | "rolled_back" | "committed" (not waited for)
    detail: dict[str, Any] = field(default_factory=dict)


def push_update(
    m: Maint,
    bundle: AppBundle,
    *,
    chunk: int = CHUNK,
    progress: Callable[[int, int], None] | None = None,
    k: int = 3,
    ok_s: int = 60,
    wdt_ms: int = 30000,
    wait: bool = True,
    timeout: float = 600.0,
    sig: str | None = None,
    mangle: Callable[[str, int, bytes], bytes] | None = None,
) -> UpdateResult:
    """Stage, check and commit `bundle` on the locker, then (wait) follow it until it is healthy or
    rolled back. Resumes a staging of the same version. `sig`: the manifest signature to send
    (default: the right one). `mangle(path, off, data)`: a test's hook to corrupt data in transit."""
    files = bundle.app_files()
    st = require_ok(m.call("app.status", {}, retries=2), "app.status")
    staged = st.get("staged") or {}
    have: dict[str, int] = {}
    if staged.get("v") == bundle.version and staged.get("ready") and sig is None:
        # resume: the files before `next` are complete (they are sent in order), `next` has some
        nxt = staged.get("next") or [None, 0]
        paths = [f["path"] for f in files]
        cut = paths.index(nxt[0]) if nxt[0] in paths else len(paths)
        for i, f in enumerate(files):
            have[f["path"]] = int(f["size"]) if i < cut else int(nxt[1]) if i == cut else 0
    else:
        first = {"version": bundle.version, "count": len(files), "size": bundle.app_size}
        first["sig"] = sig or manifest_sig(m.key, bundle.version, files)
        for i in range(0, len(files), FILES_PER_MSG):
            part = files[i : i + FILES_PER_MSG]
            if i == 0:
                r = m.call("app.begin", {**first, "files": part}, retries=2)
            else:
                r = m.call("app.files", {"files": part}, retries=2)
            require_ok(r, "app.begin" if i == 0 else "app.files")
    total = bundle.app_size
    done = sum(min(have.get(f["path"], 0), int(f["size"])) for f in files)
    if progress:
        progress(done, total)
    for f in files:
        path, data = f["path"], bundle.app_bytes(f["path"])
        off = have.get(path, 0)
        while off < len(data):
            piece = data[off : off + chunk]
            sent = mangle(path, off, piece) if mangle else piece
            r = m.call("app.chunk", {"path": path, "off": off, "data": base64.b64encode(sent).decode()}, retries=2)
            if not r.get("ok") and r.get("error") == "offset":
                off = int(r.get("have", 0))  # the locker has another amount: go on from there
                continue
            require_ok(r, f"app.chunk {path}@{off}")
            done += int(r["have"]) - off
            off = int(r["have"])
            if progress:
                progress(done, total)
    r = require_ok(m.call("app.commit", {"k": k, "ok_s": ok_s, "wdt": wdt_ms}, retries=2), "app.commit")
    if not wait:
        return UpdateResult(bundle.version, "committed", r)
    return wait_outcome(m, bundle.version, timeout)


def wait_outcome(m: Maint, version: str, timeout: float = 600.0, poll_s: float = 1.0) -> UpdateResult:
    """After a commit: the locker reboots into `version` on trial; "healthy" once it reports it runs
    `version` with no trial, "rolled_back" once it reports the rollback of `version`."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            r = m.call("app.status", {}, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
        except MaintError:
            time.sleep(poll_s)  # rebooting, or the broker has not seen it yet
            continue
        if r.get("ok"):
            last = r
            app = r.get("app") or {}
            rb = r.get("rollback") or {}
            if rb.get("from") == version and not r.get("trial") and not r.get("swap"):
                return UpdateResult(version, "rolled_back", r)
            if app.get("v") == version and not r.get("trial") and not r.get("swap"):
                return UpdateResult(version, "healthy", r)
        time.sleep(poll_s)
    raise MaintError(f"update {version}: neither healthy nor rolled back within {timeout:g}s (last status {last})")
