"""Provisioning figures (docs/benchmarks.md; docs/provisioning.md): virtual boards, real mpremote.

1. install: the application, configuration and secrets copied to a fresh virtual board (MicroPython's
   unix port behind a pty made by socat) through mpremote's transport, every file hashed back on the
   board, main.py and the marker last: time, file bytes, and every byte written to the serial port
   (the raw-REPL protocol included). Then the same install again (a re-run: verify only), and the
   install on a board provisioned before the update layout (the application flat at the root: it is
   removed and the layout installed). The layout is the one application updates need: boot.py and
   main.py at the root, the application under app/ with app/app.json (lockertools.maint.bundle.build_app).
2. littlefs: the image of the vfs partition holding the same files (littlefs-python, 4096-byte
   blocks, 512 blocks): blocks in use, and the bytes esptool sends for it (the partition, compressed).
3. bulk: 20 virtual boards from a batch, each registered (host database, broker user), installed,
   booted and waited for online on a real mosquitto with the host service running; goal < 2 minutes,
   a line per board as it finishes.

Processes: mosquitto (tests/support/mosquitto.py), socat + one `micropython` per board being installed,
one per locker running (closed once online, as the technician unplugs it), and this process (the host
service in a background asyncio loop, the provisioning). Figures are printed, never asserted.

Usage: python bench/provision.py [--boards N (0: no bulk)] [--jobs N] [--workdir DIR]
Entry point for bench/run.py: provision.run(provision.Settings(), say) -> (rows, notes).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # tests.support.mosquitto, tests.e2e.e2e_chain: what the tests run

from report import Figure, cores, kb, main_run  # noqa: E402

from lockertools.broker import BrokerSetup  # noqa: E402
from lockertools.cli.provision import Outcome, Row, run_bulk  # noqa: E402
from lockertools.provision import esp  # noqa: E402
from lockertools.provision.link import BoardLink, InstallResult, install  # noqa: E402
from lockertools.provision.stage import BrokerAddress, Secrets, Staged, stage  # noqa: E402
from lockertools.provision.steps import Options  # noqa: E402
from lockertools.provision.virtual import VirtualSerialBoard  # noqa: E402
from lockertools.service import db  # noqa: E402
from lockertools.service.runner import ServiceConfig  # noqa: E402

BOARD = ROOT / "boards" / "esp32-4door.json"
BULK_GOAL_S = 120.0
Say = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    boards: int = 20
    jobs: int = 2  # boards at a time (a USB hub with two boards; the machine has few cores)
    workdir: Path | None = None


@contextlib.contextmanager
def _workdir(settings: Settings) -> Iterator[Path]:
    if settings.workdir is not None:
        settings.workdir.mkdir(parents=True, exist_ok=False)
        yield settings.workdir
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-provision-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install_figures(tmp: Path, say: Say, rows: list[Figure], notes: list[str]) -> None:
    import secrets

    s = Secrets(secrets.token_bytes(32), "bench-password", None)
    broker = BrokerAddress("127.0.0.1", 1883)
    with stage(BOARD, "bench-1", s, arch=None, broker=broker, parent=tmp) as staged:
        vb = VirtualSerialBoard(tmp / "install" / "flash").power_on()
        try:
            t0 = time.monotonic()
            with BoardLink(vb.port) as link:
                res = install(link, staged)
            first = time.monotonic() - t0
            t0 = time.monotonic()
            with BoardLink(vb.port) as link:
                again = install(link, staged)
            second = time.monotonic() - t0
        finally:
            vb.close()
        say(f"install: {len(res.copied)} files in {first:.2f} s; re-run {second:.2f} s (already: {again.already})")
        rows.append(("install via mpremote, fresh board: time", f"{first:.2f} s", "-", None))
        rows.append(
            (
                "install via mpremote: bytes",
                f"{kb(res.bytes_payload)} of files, {kb(res.bytes_sent)} sent, {kb(res.bytes_received)} received",
                "-",
                None,
            )
        )
        rerun = f"{second:.2f} s, {again.bytes_sent} B sent"
        rows.append(("install re-run (hashes only, nothing copied)", rerun, "-", None))
        flat, removed, conv = convert_flat(tmp, staged)
        say(f"install on a flat-layout board: {flat:.2f} s, removed {removed}")
        rows.append(
            (
                "install on a board of the old flat layout (converted)",
                f"{flat:.2f} s, {kb(conv.bytes_payload)} of files, {kb(conv.bytes_sent)} sent; removed {removed}",
                "-",
                None,
            )
        )
        app = {rel: n for rel, n in staged.sizes.items() if rel.startswith("app/")}
        notes.append(
            f"provision layout: boot.py + main.py {staged.sizes['boot.py'] + staged.sizes['main.py']} B at the "
            f"root; app/ {len(app)} files ({kb(sum(app.values()))}, app.json {staged.sizes['app/app.json']} B), "
            f"application {staged.app_version}"
        )
        notes.append(
            f"provision install: {len(staged.files)} files ({kb(staged.total_bytes)}: .mpy for the unix port, "
            f"config, secrets) over a pty (no baud limit); at 115200 baud a real board needs at least "
            f"{res.bytes_sent * 10 / 115200:.0f} s for the same {kb(res.bytes_sent)}"
        )
        img = tmp / "fs.img"
        used = esp.build_littlefs(staged, img)
        data = img.read_bytes()
        packed = len(zlib.compress(data, 9))
        rows.append(
            (
                "littlefs image of the same application",
                f"{kb(used)} in use ({used // esp.BLOCK_SIZE} of {esp.BLOCK_COUNT} blocks), "
                f"{kb(packed)} compressed for esptool",
                "-",
                None,
            )
        )
        say(f"littlefs: {used} bytes in use, {packed} bytes compressed (partition {esp.VFS_SIZE})")
    with stage(BOARD, "bench-1", s, arch=esp_arch(), broker=broker, parent=tmp) as real:
        used = esp.build_littlefs(real, tmp / "fs-xtensawin.img")
        packed = len(zlib.compress((tmp / "fs-xtensawin.img").read_bytes(), 9))
        rows.append(
            (
                "littlefs image for an ESP32 (.mpy -march=xtensawin)",
                f"{len(real.files)} files, {kb(real.total_bytes)}; {kb(used)} in use "
                f"({used // esp.BLOCK_SIZE} of {esp.BLOCK_COUNT} blocks), {kb(packed)} compressed",
                "-",
                None,
            )
        )
        say(f"littlefs xtensawin: {len(real.files)} files, {used} bytes in use, {packed} compressed")


def convert_flat(tmp: Path, staged: Staged) -> tuple[float, str, InstallResult]:
    """A board provisioned before the update layout: the application's modules at the root (the old
    stage() copied the compiled tree flat); the install removes them and installs the layout."""
    vb = VirtualSerialBoard(tmp / "flat" / "flash")
    for rel in staged.files:
        dest = vb.flash_dir / rel.removeprefix("app/")
        if rel != "app/app.json":
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(staged.data(rel))
    vb.power_on()
    try:
        t0 = time.monotonic()
        with BoardLink(vb.port) as link:
            res = install(link, staged)
        took = time.monotonic() - t0
    finally:
        vb.close()
    return took, ", ".join(res.removed) or "nothing", res


def esp_arch() -> str:
    from lockertools.provision.stage import ESP32_ARCH

    return ESP32_ARCH


def bulk_figures(tmp: Path, settings: Settings, say: Say, rows: list[Figure], notes: list[str]) -> None:
    from tests.e2e.e2e_chain import ServiceThread
    from tests.support.mosquitto import Mosquitto

    setup = BrokerSetup(tmp / "broker", host="127.0.0.1", port=0, tls_port=None)
    host_pw = setup.add_host("host")
    setup.write()
    server = Mosquitto(setup)
    db_path = tmp / "fleet.db"
    db.connect(db_path, create=True).close()
    boards: dict[str, VirtualSerialBoard] = {}
    with contextlib.ExitStack() as stack:
        server.start()
        stack.callback(server.stop)
        assert setup.port is not None
        svc = ServiceThread(
            ServiceConfig(
                db_path=db_path,
                host="127.0.0.1",
                port=setup.port,
                username="host",
                password=host_pw,
                client_id="host",
                reconnect_min_s=0.05,
                reconnect_max_s=0.5,
            )
        )
        svc.start()
        stack.callback(svc.close)

        def close_all() -> None:
            for vb in boards.values():
                vb.close()

        stack.callback(close_all)
        opts = Options(
            board=BOARD,
            locker_id="-",
            db_path=db_path,
            broker_dir=setup.directory,
            plain=True,  # a plain broker on loopback
            firmware=False,
            install="mpremote",
            arch=None,
            workdir=tmp / "work",
            online_timeout_s=60.0,
            broker_reload=server.reload,
        )
        batch = [Row(f"bench-{n:02d}", BOARD, "", None, n) for n in range(1, settings.boards + 1)]

        def make_board(row: Row) -> VirtualSerialBoard:
            vb = VirtualSerialBoard(tmp / row.locker_id / "flash").power_on()
            boards[row.locker_id] = vb
            return vb

        done: list[Outcome] = []

        def on_done(out: Outcome) -> None:
            done.append(out)
            vb = boards.get(out.row.locker_id)
            if vb is not None:
                vb.close()  # online (or failed): unplugged
            state = "ok" if out.ok else f"FAILED: {out.detail}"
            say(f"bulk [{len(done):2d}/{len(batch)}] {out.row.locker_id} {state} ({out.seconds:.1f} s)")

        t0 = time.monotonic()
        outcomes = run_bulk(
            [replace(r, port=str(tmp / r.locker_id / "tty")) for r in batch],
            opts,
            make_board,
            jobs=settings.jobs,
            on_done=on_done,
        )
        total = time.monotonic() - t0
    ok = sum(1 for o in outcomes if o.ok)
    per = sorted(o.seconds for o in outcomes)
    rows.append(
        (
            f"bulk provisioning, {len(batch)} virtual boards ({settings.jobs} at a time)",
            f"{total:.1f} s ({ok} ok); per board median {per[len(per) // 2]:.1f} s",
            f"< {BULK_GOAL_S:.0f} s",
            total < BULK_GOAL_S and ok == len(batch),
        )
    )
    notes.append(
        "provision bulk: each board registered (host database, broker user + SIGHUP), its files staged, "
        "installed and verified through mpremote, booted (the real firmware, NET_HEAP) and seen online by "
        "the host service"
    )


def run(settings: Settings, say: Say) -> tuple[list[Figure], list[str]]:
    """Measure and return the table rows and notes (bench/run.py adds them to its table)."""
    rows: list[Figure] = []
    notes: list[str] = [f"provision: measured with {cores()} cores shared by every process"]
    if shutil.which("socat") is None:
        return rows, [*notes, "provision: socat is not installed (make system-packages): not measured"]
    logging.getLogger("lockertools.service").setLevel(logging.ERROR)
    with _workdir(settings) as tmp:
        parts: list[tuple[str, Callable[[], None]]] = [("install", lambda: install_figures(tmp, say, rows, notes))]
        if settings.boards > 0:
            parts.append(("bulk", lambda: bulk_figures(tmp, settings, say, rows, notes)))
        for name, part in parts:
            try:
                part()
            except Exception as exc:  # noqa: BLE001 - print what was measured, and why the rest is missing
                notes.append(f"provision {name} figures failed: {type(exc).__name__}: {str(exc)[:600]}")
                say(f"provision: {name} failed: {type(exc).__name__}: {exc}")
    return rows, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", type=int, default=Settings.boards, help="boards in the bulk batch (default 20)")
    ap.add_argument("--jobs", type=int, default=Settings.jobs, help="boards at a time (default 2)")
    ap.add_argument("--workdir", type=Path, help="a new directory to work in, kept afterwards")
    args = ap.parse_args()
    settings = Settings(boards=args.boards, jobs=args.jobs, workdir=args.workdir)
    return main_run("provision", settings, run)


if __name__ == "__main__":
    sys.exit(main())
