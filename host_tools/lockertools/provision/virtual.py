"""A virtual board for provisioning: MicroPython's unix port behind a pty, driven by mpremote as a board.

    socat PTY,link=TTY,rawer EXEC:micropython,pty,rawer,stderr,setsid,ctty

runs in the board's flash folder (its filesystem: what mpremote copies lands there). Booting it
after the install is what a reset does on a board: the REPL process ends, and the installed
`boot.py` then `main.py` run from the flash folder under `lockertools.sim.VirtualBoard(app_on_flash=
True)`, with only the simulated `machine` on MICROPYPATH: the application is what boot.py puts on
sys.path (app/, or an old flat install's modules at the root), as on an ESP32.

With `romfs=N` the board's MicroPython image has a romfs partition of N bytes (a file beside the
flash folder, `romfs.bin`; host_tools/sim_board/_simrom.py): its REPL answers `vfs.rom_ioctl` as an
ESP32's does, so provisioning deploys the application there, and the booted locker finds the
partition mounted at /rom before boot.py runs.

With `usb_console=True` the booted locker stays on the same port, as a board's USB serial port is
its console once the application runs (`UsbUart`): its log comes out of TTY, lines typed to TTY
reach its console, and Ctrl-C does what it does on an ESP32.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lockertools.maint.links import SimConsole
from lockertools.provision import ProvisionError
from lockertools.sim.board import NET_HEAP, VirtualBoard, compiled_sim_board, default_micropython, heap_bytes

START_TIMEOUT_S = 10.0


def socat_path() -> str:
    found = shutil.which("socat")
    if not found:
        raise ProvisionError("port", "socat is not installed (the virtual board's serial port): `make system-packages`")
    return found


_CTRL_C = 3
_SIGINT_BIT = 1 << (signal.SIGINT - 1)  # in /proc/PID/status "SigCgt"
_INTERRUPT_S = 5.0  # how long host bytes wait, after a Ctrl-C, for the interrupted program to stop


def interrupt_char_on(pid: int) -> bool:
    """Whether MicroPython's interrupt character is Ctrl-C in process `pid`: the unix port's
    micropython.kbd_intr(3) installs its SIGINT handler, kbd_intr(-1) removes it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & _SIGINT_BIT)
    return False


class UsbUart:
    """A board's USB serial port as a pty (`path`), wired to the stdio of the board's MicroPython
    (`board_fd`, a pty of its own in raw mode) the way the ESP32's UART driver is: bytes pass both
    ways unchanged, except Ctrl-C from the host while the interrupt character is on, which interrupts
    the running program (KeyboardInterrupt) instead of being read. The unix port keeps that setting
    as its SIGINT handler (`interrupt_char_on`), so such a Ctrl-C becomes a SIGINT to the process;
    the bytes after it wait until the program stopped (its handler gone: the REPL reads them), as
    they wait in the ESP32's receive buffer. With the interrupt character off (a production board),
    Ctrl-C is a byte on stdin like any other."""

    def __init__(self, pid: Callable[[], int | None]) -> None:
        import pty
        import tty

        self._pid = pid
        self._host, host_side = pty.openpty()
        self._board, self.board_fd = pty.openpty()
        for fd in (self._host, host_side, self._board, self.board_fd):
            tty.setraw(fd)
        self._host_side = host_side  # held open: the port stays while programs open and close it
        self.path = os.ttyname(host_side)
        self._stop = False
        self._threads = [
            threading.Thread(target=self._to_board, daemon=True, name="uart-rx"),
            threading.Thread(target=self._to_host, daemon=True, name="uart-tx"),
        ]
        for t in self._threads:
            t.start()

    def _read(self, fd: int) -> bytes | None:
        import select

        while not self._stop:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    return os.read(fd, 4096)
                except OSError:
                    return None
        return None

    def _to_board(self) -> None:
        while (data := self._read(self._host)) is not None:
            while data:
                i = data.find(_CTRL_C)
                pid = self._pid() if i >= 0 else None
                if i < 0 or pid is None or not interrupt_char_on(pid):
                    os.write(self._board, data)
                    break
                os.write(self._board, data[:i])
                os.kill(pid, signal.SIGINT)
                deadline = time.monotonic() + _INTERRUPT_S
                while interrupt_char_on(pid) and time.monotonic() < deadline and not self._stop:
                    time.sleep(0.005)  # a state in /proc: nothing to block on
                data = data[i + 1 :]

    def _to_host(self) -> None:
        while (data := self._read(self._board)) is not None:
            os.write(self._host, data)

    def close(self) -> None:
        self._stop = True
        for t in self._threads:
            t.join(2)
        for fd in (self._host, self._host_side, self._board, self.board_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class VirtualSerialBoard:
    """A board's REPL on a pty (`tty`), its filesystem in `flash_dir`; `boot()` starts the locker."""

    def __init__(
        self,
        flash_dir: Path,
        tty: Path | None = None,
        *,
        heap: str = NET_HEAP,
        usb_console: bool = False,
        romfs: int | None = None,
    ) -> None:
        self.flash_dir = Path(flash_dir)
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.romfs = self.flash_dir.parent / "romfs.bin" if romfs else None
        if self.romfs is not None and not self.romfs.exists():
            self.romfs.write_bytes(b"\xff" * int(romfs or 0))  # erased flash
        self.tty = Path(tty) if tty else self.flash_dir.parent / "tty"
        self.heap = heap
        self.usb_console = usb_console
        self.uart: UsbUart | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.board: VirtualBoard | None = None
        self._log = self.flash_dir.parent / "socat.log"

    @property
    def port(self) -> str:
        return str(self.tty)

    def power_on(self) -> VirtualSerialBoard:
        """The board on the USB port, in its REPL (MicroPython without an application)."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.tty.unlink(missing_ok=True)
        mp = default_micropython()
        program = str(mp)
        env = dict(os.environ)
        if self.romfs is not None:  # the REPL with the partition's vfs.rom_ioctl (_simrom.install)
            start = self.flash_dir.parent / "romfs_repl.py"
            start.write_text(
                f"import sys\nsys.path.append({str(compiled_sim_board())!r})\nimport _simrom\n"
                "_simrom.install()\n_simrom.mount_rom()\nsys.path.remove(sys.path[-1])\n"
            )
            program = f"{mp} -i {start}"
            env["LOCKER_SIM_ROMFS"] = str(self.romfs)
        argv = [socat_path(), f"PTY,link={self.tty},rawer", f"EXEC:{program},pty,rawer,stderr,setsid,ctty"]
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.flash_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.tty.exists():  # socat makes the link once the pty is open: nothing to block on
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ProvisionError("port", f"the virtual board did not start: {self._log.read_text()[-300:]}")
            time.sleep(0.01)
        return self

    def _children(self) -> list[int]:
        if self.proc is None:
            return []
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def die(self) -> None:
        """The board loses power: its MicroPython is killed at once (socat then closes the pty)."""
        for pid in self._children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.power_off()

    def power_off(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            children = self._children_of(proc.pid)
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pid in children:  # socat passes SIGTERM on; make sure
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.tty.unlink(missing_ok=True)
        self._close_board()

    def _close_board(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None
        if self.uart is not None:
            self.uart.close()
            self.uart = None

    @staticmethod
    def _children_of(pid: int) -> list[int]:
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def boot(self, **kw: object) -> VirtualBoard:
        """Reset into the installed application: the REPL ends, boot.py and main.py run on the simulated
        board from the flash folder (nothing of the application comes from elsewhere)."""
        self.power_off()
        if not (self.flash_dir / "main.py").exists():
            raise ProvisionError("boot", "the board has no main.py: the install did not finish")
        if self.usb_console:
            # The port is the booted locker's console; when main.py stops, the REPL is on it (-i).
            self.uart = UsbUart(lambda: board.pid)
            kw = {**kw, "console_fd": self.uart.board_fd, "env": {"MICROPYINSPECT": "1"}}
            self.tty.unlink(missing_ok=True)
            self.tty.symlink_to(self.uart.path)
        heap = self.heap
        if self.romfs is not None:
            # A board maps the partition from flash; here the image is read onto the heap: as much more.
            env = kw.get("env")
            kw = {**kw, "env": {**(env if isinstance(env, dict) else {}), "LOCKER_SIM_ROMFS": str(self.romfs)}}
            heap = str(heap_bytes(heap) + self.romfs.stat().st_size)
        board = VirtualBoard(
            self.flash_dir,
            heap=heap,
            sim_board_dir=compiled_sim_board(),
            precompile=False,  # the board runs what was installed: boot.py, main.py, app/
            app_on_flash=True,
            auto_reboot=True,
            **kw,  # type: ignore[arg-type]
        )
        self.board = board
        board.boot(keep_rtc=int(time.time()))
        return board

    def console(self) -> SimConsole:
        """The booted locker's console (what a USB console shows of a board, and its stdin)."""
        if self.board is None:
            raise ProvisionError("selftest", "the virtual board has not booted")
        return SimConsole(self.board)

    def close(self) -> None:
        self._close_board()
        self.power_off()

    def __enter__(self) -> VirtualSerialBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
