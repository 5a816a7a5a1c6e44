"""Prepare a locker's flash folder: what provisioning puts on a board's filesystem.

Used by the simulator (the flash folder is the simulated board's filesystem) and by provisioning.
Codes are written by the firmware's own code store, so host and board share one file format.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LockerSecrets:
    locker_id: str
    key: bytes

    def __repr__(self) -> str:  # never print the key
        return f"LockerSecrets(locker_id={self.locker_id!r}, key=<{len(self.key)} bytes>)"


@dataclass(frozen=True)
class CodeSpec:
    """A code as staff see it. `code` never leaves the host in this form. `kind` is the kind byte
    (docs/protocol.md: bits 0-3 the kind, 4-5 a size wanted, 6 a low door); kinds 1-3 (staff PIN,
    return, delivery) are door-free: `door` is "*". `item`: what the resident takes out (the host's
    ITEMS index, 0 a parcel)."""

    code: str
    door: str
    expiry: int = 0
    kind: int = 0
    code_id: int = 0
    item: int = 0


def board_labels(board: Mapping[str, Any]) -> list[str]:
    return [str(d.get("label", i + 1)) for i, d in enumerate(board["doors"])]


def code_rows(key: bytes, labels: list[str], codes: Iterable[CodeSpec]) -> list[tuple[bytes, int, int, int, int, int]]:
    """Code-store records (tag, door index, kind, expiry, id, item): the HMAC tags, never the codes."""
    from locker import codes as fw_codes  # type: ignore[import-not-found]
    from locker.hmac256 import HmacKey  # type: ignore[import-not-found]

    hkey = HmacKey(key)
    rows = []
    for n, spec in enumerate(codes, start=1):
        if spec.kind & 0x0F:  # staff PIN, return, delivery: door-free, tagged over "*:" code
            if spec.door != "*":
                raise ValueError(f"code #{n}: kind {spec.kind & 0x0F} is door-free: its door is '*'")
            door = 0xFF
        else:
            door = labels.index(spec.door)
        tag = fw_codes.tag(hkey, spec.door, spec.code.encode())
        rows.append((tag, door, spec.kind, spec.expiry, spec.code_id or n, spec.item))
    return rows


def prepare(
    flash_dir: Path,
    board_path: Path,
    codes: Iterable[CodeSpec | tuple[Any, ...]] = (),
    config_overrides: Mapping[str, Any] | None = None,
    locker_id: str = "sim-1",
    key: bytes | None = None,
    revision: int = 1,
    net: Mapping[str, Any] | None = None,
) -> LockerSecrets:
    """Write board.json, config.json, locker.key and codes.bin into flash_dir; with `net`, also
    net.json and the broker's CA (see write_net). Without, the locker is offline."""
    flash_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(board_path, flash_dir / "board.json")
    board = json.loads(board_path.read_text())
    config = {"locker_id": locker_id, **(config_overrides or {})}
    (flash_dir / "config.json").write_text(json.dumps(config, indent=1))
    key = key or secrets.token_bytes(32)
    (flash_dir / "locker.key").write_text(key.hex())
    specs = [c if isinstance(c, CodeSpec) else CodeSpec(*c) for c in codes]
    write_codes(flash_dir, key, board_labels(board), specs, revision)
    if net is not None:
        write_net(flash_dir, net)
    return LockerSecrets(locker_id, key)


def write_net(flash_dir: Path, net: Mapping[str, Any] | None) -> None:
    """Write net.json (docs/hardware.md, "Network on a real board"); None removes it (offline).

    `net` is net.json's content, plus one host-side key: ``broker.ca_file``, the CA certificate on
    this machine (PEM or DER). It is stored on the board in DER (what the firmware's TLS loads) under
    ``broker.ca`` (default ``ca.der``), and the key itself is not written.
    """
    path = flash_dir / "net.json"
    if net is None:
        path.unlink(missing_ok=True)
        return
    data = json.loads(json.dumps(dict(net)))  # a deep copy, and JSON-able or an error here
    broker = data.get("broker")
    if not isinstance(broker, dict) or not broker.get("host"):
        raise ValueError("net: broker.host is required")
    ca_file = broker.pop("ca_file", None)
    if ca_file is not None:
        broker.setdefault("ca", "ca.der")
        (flash_dir / str(broker["ca"])).write_bytes(ca_der(Path(ca_file).read_bytes()))
    # The firmware reads a broker without "tls" as TLS (it never sends the password in clear).
    if broker.get("tls", True) and not (flash_dir / str(broker.get("ca") or "ca.der")).exists():
        raise ValueError("net: TLS needs the broker's CA (broker.ca_file)")
    data.setdefault("wifi", None)
    data.setdefault("keepalive", 30)
    path.write_text(json.dumps(data, indent=1))


def ca_der(cert: bytes) -> bytes:
    """A certificate in DER, from PEM or DER."""
    if b"-----BEGIN" not in cert:
        return cert
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(cert).public_bytes(Encoding.DER)


def write_codes(flash_dir: Path, key: bytes, labels: list[str], codes: list[CodeSpec], revision: int) -> None:
    from locker.codes import CodeStore  # type: ignore[import-not-found]

    store = CodeStore(key, labels, path=str(flash_dir / "codes.bin"), used_path=str(flash_dir / "used.bin"))
    store.replace(revision, code_rows(key, labels, codes))
