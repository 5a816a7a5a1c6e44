# HMAC-SHA256 (RFC 2104) on hashlib.sha256, and a constant-time comparison.
# MicroPython has neither the hmac module nor hashlib's copy(), so a key keeps its two padded
# blocks ready and each digest hashes them afresh (two extra compressions, no allocation of pads).
import hashlib

from micropython import const

_BLOCK = const(64)
_DIGEST_SIZE = const(32)


def _pads(key):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    ipad = bytearray(_BLOCK)
    opad = bytearray(_BLOCK)
    for i in range(_BLOCK):
        k = key[i] if i < len(key) else 0
        ipad[i] = k ^ 0x36
        opad[i] = k ^ 0x5C
    return bytes(ipad), bytes(opad)


class HmacKey:
    """A key with its inner and outer pads computed once."""

    def __init__(self, key):
        if isinstance(key, str):
            key = key.encode()
        self._ipad, self._opad = _pads(key)

    def digest(self, *parts):
        """HMAC-SHA256 of the concatenation of parts (bytes, bytearray or memoryview; not copied)."""
        inner = hashlib.sha256(self._ipad)
        for p in parts:
            inner.update(p)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()


def hmac_sha256(key, msg):
    return HmacKey(key).digest(msg)


def equal(a, b):
    """True when a and b hold the same bytes. Time depends only on len(a): no early exit."""
    la = len(a)
    lb = len(b)
    diff = la ^ lb
    if lb == 0:
        b = a
        lb = la or 1
    j = 0
    for i in range(la):
        diff |= a[i] ^ b[j]
        j += 1
        if j == lb:
            j = 0
    return diff == 0
