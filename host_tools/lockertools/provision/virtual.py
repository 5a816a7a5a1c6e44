"""A virtual board for provisioning: MicroPython's unix port behind a pty, driven by mpremote as a board.

    socat PTY,link=TTY,rawer EXEC:micropython,pty,rawer,stderr,setsid,ctty

runs in the board's flash folder (its filesystem: what mpremote copies lands there). Booting it
after the install is what a reset does on a board: the REPL process ends, and the installed
`boot.py` then `main.py` run from the flash folder under `lockertools.sim.VirtualBoard(app_on_flash=
True)`, with only the simulated `machine` on MICROPYPATH: the application is what boot.py puts on
sys.path (app/, or an old flat install's modules at the root), as on an ESP32.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from lockertools.maint import SimConsole
from lockertools.provision import ProvisionError
from lockertools.sim import NET_HEAP, VirtualBoard, compiled_sim_board, default_micropython

START_TIMEOUT_S = 10.0


def socat_path() -> str:
    found = shutil.which("socat")
    if not found:
        raise ProvisionError("port", "socat is not installed (the virtual board's serial port): `make system-packages`")
    return found


class VirtualSerialBoard:
    """A board's REPL on a pty (`tty`), its filesystem in `flash_dir`; `boot()` starts the locker."""

    def __init__(self, flash_dir: Path, tty: Path | None = None, *, heap: str = NET_HEAP) -> None:
        self.flash_dir = Path(flash_dir)
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.tty = Path(tty) if tty else self.flash_dir.parent / "tty"
        self.heap = heap
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
        argv = [socat_path(), f"PTY,link={self.tty},rawer", f"EXEC:{mp},pty,rawer,stderr,setsid,ctty"]
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=self.flash_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
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
        board = VirtualBoard(
            self.flash_dir,
            heap=self.heap,
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
        if self.board is not None:
            self.board.close()
            self.board = None
        self.power_off()

    def __enter__(self) -> VirtualSerialBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
