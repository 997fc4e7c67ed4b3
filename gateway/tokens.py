"""The SCIM bearer token's format: made here, recognised here, hashed here.

Tokens look like ``sams_scim_<40 base62 chars><6-char checksum>``: the prefix
lets secret scanners recognise a leaked one, the checksum lets them tell a
real token from a lookalike without asking us. We store only SHA-256 of the
token (gateway/auth.py looks credentials up by it). A module of its own, with
no imports beyond the standard library, so that the ``simpleams`` command can
issue tokens without loading the web application.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib

TOKEN_PREFIX = "sams_scim_"  # noqa: S105 - a public prefix, not a secret
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}[0-9A-Za-z]{{46}}$")


def generate_token() -> str:
    body = "".join(secrets.choice(_BASE62) for _ in range(40))
    return TOKEN_PREFIX + body + _checksum(body)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    return token[: len(TOKEN_PREFIX) + 4]


def is_well_formed(token: str) -> bool:
    return bool(_TOKEN_RE.match(token)) and _checksum(token[len(TOKEN_PREFIX) : -6]) == token[-6:]


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode())
    digits = []
    for _ in range(6):
        value, digit = divmod(value, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))
