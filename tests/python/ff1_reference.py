"""FF1 (NIST SP 800-38G, algorithms 7 and 8) and our format-preserving construction, written
again from the standard's pseudo-code and README.md, independently of the Rust code: Python's
integers for the numerals, `cryptography`'s AES for the PRF.

Slow and plain on purpose: it is the yardstick, not a product.
"""

from __future__ import annotations

import math

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ALPHABETS = {
    "digits": "0123456789",
    "alnum": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "alnum-upper": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "alnum-lower": "0123456789abcdefghijklmnopqrstuvwxyz",
    "vin": "0123456789ABCDEFGHJKLMNPRSTUVWXYZ",
}


def _num(numerals: list[int], radix: int) -> int:
    value = 0
    for numeral in numerals:
        value = value * radix + numeral
    return value


def _str(value: int, radix: int, length: int) -> list[int]:
    out = []
    for _ in range(length):
        value, numeral = divmod(value, radix)
        out.append(numeral)
    return out[::-1]


def _prf(key: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    return (encryptor.update(data) + encryptor.finalize())[-16:]


def _ciph(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _feistel(key: bytes, radix: int, tweak: bytes, x: list[int], decrypt: bool) -> list[int]:
    n, t = len(x), len(tweak)
    u = n // 2
    v = n - u
    a, b = x[:u], x[u:]
    b_len = math.ceil(math.ceil(v * math.log2(radix)) / 8)
    d = 4 * math.ceil(b_len / 4) + 4
    p = bytes([1, 2, 1]) + radix.to_bytes(3, "big") + bytes([10, u % 256]) + n.to_bytes(4, "big") + t.to_bytes(4, "big")
    rounds = range(9, -1, -1) if decrypt else range(10)
    for i in rounds:
        fed = a if decrypt else b
        q = tweak + bytes((-t - b_len - 1) % 16) + bytes([i]) + _num(fed, radix).to_bytes(b_len, "big")
        r = _prf(key, p + q)
        s = r
        for j in range(1, math.ceil(d / 16)):
            s += _ciph(key, bytes(x ^ y for x, y in zip(r, j.to_bytes(16, "big"))))
        y = int.from_bytes(s[:d], "big")
        m = u if i % 2 == 0 else v
        if decrypt:
            c = (_num(b, radix) - y) % radix**m
            a, b = _str(c, radix, m), a
        else:
            c = (_num(a, radix) + y) % radix**m
            a, b = b, _str(c, radix, m)
    return a + b


def encrypt(key: bytes, radix: int, tweak: bytes, x: list[int]) -> list[int]:
    """FF1.Encrypt(K, T, X)."""
    return _feistel(key, radix, tweak, x, decrypt=False)


def decrypt(key: bytes, radix: int, tweak: bytes, x: list[int]) -> list[int]:
    """FF1.Decrypt(K, T, X)."""
    return _feistel(key, radix, tweak, x, decrypt=True)


def ff1_key(master: bytes) -> bytes:
    """The format-preserving key of a key version (README: HKDF-SHA256, salt `pseudonym/1`)."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"pseudonym/1",
        info=b"pseudonym/1 format-preserving ff1-aes256",
    ).derive(master)


def pseudonym(master: bytes, domain: str, alphabet: str, value: str, decrypt_it: bool = False) -> str:
    """The format-preserving pseudonym of `value` (or, deciphering, its value) in `domain`:
    characters of `alphabet` enciphered in place, the others kept, the tweak binding the domain
    and each kept character with its position."""
    tweak = domain.encode() + b"\0"
    numerals = []
    for position, c in enumerate(value):
        if c in alphabet:
            numerals.append(alphabet.index(c))
        else:
            tweak += position.to_bytes(4, "big") + c.encode()
    step = decrypt if decrypt_it else encrypt
    out = iter(step(ff1_key(master), len(alphabet), tweak, numerals))
    return "".join(alphabet[next(out)] if c in alphabet else c for c in value)
