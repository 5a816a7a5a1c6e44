# HMAC-SHA256 against RFC 4231 and (on CPython) the hmac module; the constant-time comparison.
import binascii

from locker import hmac256


def _h(s):
    return binascii.unhexlify(s)


# RFC 4231 section 4: (key, data, HMAC-SHA-256); test case 5's output is truncated to 128 bits.
RFC4231 = (
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (
        bytes(range(1, 26)),
        b"\xcd" * 50,
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
    ),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
    (
        b"\xaa" * 131,
        b"This is a test using a larger than block-size key and a larger than block-size data."
        b" The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
    ),
)


def test_rfc4231_vectors():
    for key, data, expected in RFC4231:
        mac = hmac256.hmac_sha256(key, data)
        assert len(mac) == 32
        want = _h(expected)
        assert mac[: len(want)] == want, expected


def test_hmac_key_digest_of_parts_equals_digest_of_whole():
    k = hmac256.HmacKey(b"Jefe")
    whole = b"what do ya want for nothing?"
    parts = (b"what do ", bytearray(b"ya want "), memoryview(b"xxfor nothing?")[2:])
    assert k.digest(*parts) == k.digest(whole) == _h(RFC4231[1][2])
    assert k.digest() == hmac256.hmac_sha256(b"Jefe", b"")


def test_key_is_reusable():
    k = hmac256.HmacKey(b"\xaa" * 131)
    for key, data, expected in RFC4231[5:]:
        assert k.digest(data) == _h(expected)
        assert k.digest(data) == _h(expected)


def test_agrees_with_cpython_hmac_for_many_lengths():
    try:
        import hashlib
        import hmac
    except ImportError:  # MicroPython: the RFC vectors above are the reference
        return
    for klen in (0, 1, 31, 32, 63, 64, 65, 200):
        key = bytes((i * 7 + klen) & 0xFF for i in range(klen))
        for mlen in (0, 1, 55, 56, 64, 119, 1000):
            msg = bytes((i * 13) & 0xFF for i in range(mlen))
            assert hmac256.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_equal():
    a = bytes(range(32))
    assert hmac256.equal(a, bytes(range(32)))
    assert hmac256.equal(a, bytearray(a))
    assert hmac256.equal(memoryview(a), a)
    assert hmac256.equal(b"", b"")
    for i in range(32):
        b = bytearray(a)
        b[i] ^= 0x01
        assert not hmac256.equal(a, b)
        assert not hmac256.equal(b, a)
    assert not hmac256.equal(a, a[:31])
    assert not hmac256.equal(a[:31], a)
    assert not hmac256.equal(a, b"")
    assert not hmac256.equal(b"", a)
    assert not hmac256.equal(b"\x00", b"\x00\x00")


def test_equal_has_no_early_exit():
    # Count the bytes read: a difference in the first byte must not stop the loop.
    class Counting:
        def __init__(self, data):
            self.data = data
            self.reads = 0

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            self.reads += 1
            return self.data[i]

    same = Counting(bytes(32))
    first = Counting(b"\x01" + bytes(31))
    assert hmac256.equal(same, bytes(32))
    assert not hmac256.equal(first, bytes(32))
    assert same.reads == first.reads == 32
