"""Where the firmware's heap goes: the real boot (locker.runtime.Runtime.boot) on the simulated board
running alone, with every first-time import measured (gc.collect + gc.mem_alloc around it).

Run by bench/run.py; `python bench/heap_probe.py [4-door|16-door]` prints the breakdown on its own.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from simlocker import run_standalone

_PROBE = r"""
import builtins, gc, json, sys

def used():
    gc.collect()
    return gc.mem_alloc()

a0 = used()
import machine
machine.Pin(13, machine.Pin.OUT, value=1)
a1 = used()

_orig = builtins.__import__
costs = {}
stack = []

def _import(name, globals=None, locals=None, fromlist=(), level=0):
    fl = fromlist if isinstance(fromlist, (tuple, list)) else ()
    names = [name] + [name + "." + f for f in fl]
    fresh = [n for n in names if n not in sys.modules]
    if level or not fresh:
        return _orig(name, globals, locals, fromlist, level)
    before = used()
    stack.append(0)
    try:
        return _orig(name, globals, locals, fromlist, level)
    finally:
        inner = stack.pop()
        incl = used() - before
        loaded = [n for n in fresh if n in sys.modules]
        if loaded:
            costs[",".join(loaded)] = incl - inner
        if stack:
            stack[-1] += incl

builtins.__import__ = _import
from locker import runtime
rt = runtime.Runtime()
rt.boot()
builtins.__import__ = _orig
a2 = used()
resident = {k: v for k, v in costs.items() if any(n in sys.modules for n in k.split(","))}
from locker import codes
table = codes.RECORD_SIZE * rt.locker.codes.capacity if rt.locker is not None else 0
builtins.__import__ = _import
from locker import console
builtins.__import__ = _orig
a3 = used()
print("PROBE " + json.dumps({"shim": a1 - a0, "boot": a2 - a1, "console": a3 - a2, "table": table,
                             "modules": resident, "all_imports": costs}))
"""


def probe(board: str) -> dict[str, Any]:
    """{"shim", "boot" (all the firmware holds after Runtime.boot), "console" (first console line),
    "table" (code table), "modules": {name: bytes} of modules still loaded}."""
    out = run_standalone(board, _PROBE, heap="1M", with_firmware=True)
    line = next(ln for ln in out.splitlines() if ln.startswith("PROBE "))
    data: dict[str, Any] = json.loads(line[6:])
    return data


def summary(data: dict[str, Any], top: int = 5) -> str:
    mods: dict[str, int] = data["modules"]
    code = sum(mods.values())
    rest = data["boot"] - code - data["table"]
    big = sorted(mods.items(), key=lambda kv: -kv[1])[:top]
    return (
        f"after boot {data['boot']} B = modules (bytecode + globals, {len(mods)} loaded) {code} B"
        f" + code table {data['table']} B + other objects {rest} B; first console line +{data['console']} B."
        f" Largest modules: " + ", ".join(f"{k} {v}" for k, v in big)
    )


if __name__ == "__main__":
    for b in sys.argv[1:] or ["4-door", "16-door"]:
        d = probe(b)
        print(f"{b}: shim {d['shim']} B; {summary(d, top=12)}")
