"""Client API keys: generation, checksum, hashing, display.

A key is ``tw_`` + 43 base62 characters (256 random bits) + 6 base62 characters of CRC32 checksum. The
prefix lets secret scanners find leaked keys; the checksum lets a data plane reject a typo without a lookup.
Only ``hash_key(secret)`` (sha256) is ever stored or shipped; ``hint`` is what may be shown afterwards.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib

PREFIX = "tw_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LEN = 43  # 62**43 > 2**256
_CHECK_LEN = 6  # 62**6 > 2**32
KEY_LEN = len(PREFIX) + _BODY_LEN + _CHECK_LEN


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, 62)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECK_LEN)


def generate_key() -> str:
    """A new secret key with 256 bits of entropy."""
    return key_of(secrets.randbits(256))


def key_of(value: int) -> str:
    """The well-formed key whose body encodes ``value`` (256 bits): ``generate_key``'s, or a benchmark's
    deterministic one."""
    body = _base62(value, _BODY_LEN)
    return PREFIX + body + _checksum(body)


def is_well_formed(secret: str) -> bool:
    """True when ``secret`` has the prefix, length, alphabet and a matching checksum."""
    if len(secret) != KEY_LEN or not secret.startswith(PREFIX):
        return False
    body = secret[len(PREFIX) : len(PREFIX) + _BODY_LEN]
    check = secret[len(PREFIX) + _BODY_LEN :]
    if any(c not in _ALPHABET for c in body):
        return False
    return secrets.compare_digest(_checksum(body), check)


def hash_key(secret: str) -> bytes:
    """The 32-byte digest stored and shipped instead of the key."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def hint(secret: str) -> str:
    """What may be displayed after creation: the prefix and the last four characters."""
    return f"{PREFIX}...{secret[-4:]}"
