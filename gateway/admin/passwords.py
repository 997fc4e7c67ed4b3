"""Admin passwords: argon2id hashes (argon2-cffi, RFC 9106 parameters).

Hashing is deliberately slow (tens of milliseconds of CPU and 64 MiB), so
the async pages call these through a thread, never on the event loop.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 takes any length; this only bounds the work per attempt

_hasher = PasswordHasher()
# Verified when the email is unknown, so that a wrong email costs as much time
# as a wrong password and sign-in timing does not reveal who is an admin.
_DUMMY_HASH = _hasher.hash("not a password anyone has")


class WeakPassword(ValueError):
    """A password the CLI refuses to set, with the reason."""


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"Use at least {MIN_LENGTH} characters (a passphrase is fine).")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"Use at most {MAX_LENGTH} characters.")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no hash (unknown admin) always False, as slowly."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password[:MAX_LENGTH]) and (
            password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False
