"""What ROMFS saves: the firmware's live heap with its modules imported from the filesystem (a
board's littlefs: each .mpy is copied to the heap) and from a ROMFS image mounted at /rom
(executed in place: bytecode and constant strings stay in the image), the same steps otherwise
(bench/heap32.py's STEPS: the real Runtime.boot() on the simulated board, 500 codes).

On both ports (the webassembly port, 32-bit, and the unix port, 64-bit, as in bench/heap32.py) the
image is read into the heap and mounted with vfs.VfsRom before the first step (a board maps its
romfs partition from flash instead): every reading holds it alike, and the firmware's share is read
over the step before the boot, so the image is not in the figures. Neither port has a romfs
partition to deploy to (the unix port has no vfs.rom_ioctl; the webassembly port's one segment is
empty), which is why the image is mounted by hand.

Run by bench/run.py; `python bench/heap_romfs.py [4-door 16-door ...]` prints the table alone;
`--breakdown` prints where the 32-bit ROMFS heap after boot goes instead (breakdown()).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import heap32  # noqa: E402
import simlocker as S  # noqa: E402
from report import Figure, kb  # noqa: E402

from lockertools import FIRMWARE_DIR  # noqa: E402
from lockertools.build import romfs_image  # noqa: E402
from lockertools.sim import compiled_firmware  # noqa: E402

# After the readings: where the firmware's modules were imported from (the check that ROMFS served them).
WHERE = ("where", "from locker import runtime as _h32_rt\nprint('H32FROM', _h32_rt.__file__)")


@dataclass
class Saving:
    """One step's firmware heap on one port, from the filesystem and from ROMFS."""

    board: str
    what: str
    bits: int
    files: int
    rom: int

    @property
    def saved(self) -> int:
        return self.files - self.rom


def image_path(folder: Path) -> Path:
    """The compiled firmware (what the simulator and the heap figures run) as a ROMFS image."""
    path = folder / "firmware.romfs"
    path.write_bytes(romfs_image(compiled_firmware(FIRMWARE_DIR, S.default_micropython())))
    return path


def measure(board: str, ncodes: int = heap32.CODES) -> list[Saving]:
    """Offline and networked, each on a fresh flash folder and interpreter, from files and from ROMFS."""
    out = []
    with tempfile.TemporaryDirectory(prefix="locker-heaprom-") as name:
        tmp = Path(name)
        image = image_path(tmp)
        for networked in (False, True):
            flash = heap32.flash_folder(tmp / board, board, ncodes, networked=networked)
            steps = [heap32.START, heap32.MACHINE, heap32.BOOT, heap32.NET_MODULES if networked else heap32.STAFF]
            for bits, runner in ((32, heap32.run_wasm), (64, heap32.run_unix)):
                runs = {}
                for source, romfs in (("files", None), ("rom", image)):
                    work = tmp / f"{board}-{bits}-{source}-{networked}"
                    shutil.copytree(flash, work)
                    run = runner(work, [*steps, WHERE], romfs=romfs)
                    run.check(staff=not networked)
                    where = next((ln.split()[1] for ln in run.lines if ln.startswith("H32FROM ")), "?")
                    if where.startswith("/rom/") != (romfs is not None):
                        raise heap32.Heap32Error(f"{bits}-bit, {source}: the firmware was imported from {where}")
                    runs[source] = run
                mode = "networked" if networked else "offline"
                after = "net modules" if networked else "staff session"
                for step, what in (
                    ("boot", f"after boot, {mode}"),
                    (after, "after boot + network modules" if networked else "after a staff session"),
                ):
                    out.append(Saving(board, what, bits, runs["files"].firmware(step), runs["rom"].firmware(step)))
    return out


# The interpreter's table of interned names: "qstr pool: n_pool=6, n_qstr=1010, n_str_data_bytes=9051,
# n_total_bytes=18059". n_total_bytes counts the pools' heap blocks and the names' text; a name from
# a ROM .mpy keeps its text in the image (qstr_from_strn_static), so the pools' share is the heap.
QSTRS = "import micropython\nmicropython.qstr_info()"
# After the boot, what each part holds: the heap a step gives back when it lets go of that part (the
# steps run in this order; a part still named by an earlier one shows in the later one).
PARTS = [
    ("uplink, MQTT client, commands", "rt.uplink = rt.net = rt.commands = None\nif rt.locker: rt.locker.notify = None"),
    ("used-code journal (RAM)", "rt.locker.codes._jbuf = None"),
    ("code table and code store", "rt.locker.codes = None"),
    ("outbox index", "rt.locker.outbox._seqs = None"),
    ("door bank (per-door state)", "rt.locker.doors = None"),
    ("keypad and code entry", "rt.locker.keypad = rt.locker.entry = None"),
    ("display driver", "rt.board.display = None"),
    ("door pins (solenoid, closed, parcel)", "rt.board.solenoids = rt.board.closed = rt.board.parcels = None"),
    ("other board objects", "rt.board.expanders = rt.board.expander_list = rt.board.i2c = rt.board.buzzer = None"),
    ("the rest of the locker and runtime", "rt.locker = rt.board = rt.clock = rt.cfg = None\nrt = None"),
]


@dataclass
class Breakdown:
    """The 32-bit live heap after boot from ROMFS, by part (bytes), and the interned names."""

    board: str
    networked: bool
    total: int  # the firmware's live heap after boot
    asyncio: int  # asyncio, imported before the boot (the port's own package: frozen, globals in heap)
    parts: dict[str, int]
    names: int  # names the firmware interned (boot included)
    pools: int  # heap of the name pools they took

    @property
    def modules(self) -> int:
        """What no part gives back: the resident modules' objects (functions, classes, globals;
        their bytecode is in the image) and what boot-only modules left behind, less asyncio and
        the name pools."""
        return self.total - sum(self.parts.values()) - self.asyncio - self.pools


def _qstr_info(lines: list[str]) -> list[tuple[int, int]]:
    """(names, pool heap bytes) of every qstr_info line, in order."""
    out = []
    for line in lines:
        if line.startswith("qstr pool:"):
            f = dict(kv.split("=") for kv in line[len("qstr pool:") :].replace(",", " ").split())
            out.append((int(f["n_qstr"]), int(f["n_total_bytes"]) - int(f["n_str_data_bytes"])))
    return out


def breakdown(board: str, networked: bool, ncodes: int = heap32.CODES) -> Breakdown:
    with tempfile.TemporaryDirectory(prefix="locker-heapparts-") as name:
        tmp = Path(name)
        image = image_path(tmp)
        (tmp / board).mkdir()
        flash = heap32.flash_folder(tmp / board, board, ncodes, networked=networked)
        steps = [
            heap32.START,
            heap32.MACHINE,
            ("names before", QSTRS),
            ("asyncio", "import asyncio"),
            heap32.BOOT,
            ("names after", QSTRS),
            *PARTS,
        ]
        run = heap32.run_wasm(flash, steps, romfs=image)
        run.check()
        (n0, p0), (n1, p1) = _qstr_info(run.lines)[:2]
        order = [step for step, _ in steps]
        freed = {}
        for step, _ in PARTS:
            freed[step] = run.alloc[order[order.index(step) - 1]] - run.alloc[step]
        return Breakdown(
            board,
            networked,
            total=run.firmware("boot"),
            asyncio=run.alloc["asyncio"] - run.alloc["names before"],
            parts=freed,
            names=n1 - n0,
            pools=p1 - p0,
        )


def breakdown_lines(b: Breakdown) -> list[str]:
    mode = "networked" if b.networked else "offline"
    out = [f"{b.board}, {mode}: {kb(b.total)} after boot (32-bit, ROMFS)"]
    out += [f"  {what}: {n} B" for what, n in b.parts.items() if n]
    out.append(f"  interned names: {b.names} new, their pools {b.pools} B")
    out.append(f"  asyncio (imported before the boot): {b.asyncio} B")
    out.append(f"  modules' objects and the rest: {b.modules} B")
    return out


def rows(savings: list[Saving], ncodes: int = heap32.CODES) -> list[Figure]:
    return [
        (
            f"live heap {s.what}, {s.board}, {ncodes} codes, {s.bits}-bit: files vs ROMFS",
            f"{kb(s.files)} -> {kb(s.rom)} (saves {kb(s.saved)}, {100 * s.saved / s.files:.0f}%)",
            "-",
            None,
        )
        for s in savings
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("boards", nargs="*", default=list(S.BOARDS), help="4-door, 16-door (default: both)")
    ap.add_argument("--codes", type=int, default=heap32.CODES)
    ap.add_argument("--breakdown", action="store_true", help="where the 32-bit ROMFS heap after boot goes")
    args = ap.parse_args()
    heap32.check_versions()
    if args.breakdown:
        for b in args.boards:
            for networked in (False, True):
                print("\n".join(breakdown_lines(breakdown(b, networked, args.codes))))
        return 0
    for r in rows([s for b in args.boards for s in measure(b, args.codes)], args.codes):
        print(f"{r[0]}: {r[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
