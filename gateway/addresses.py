"""What counts as an email address here: the ``name@domain`` shape, nothing more.

RFC 7643 §2.4 leaves canonicalisation to the service provider, and strict
validators refuse special-use domains (``corp.local``) that real directories
use (README, "Compliance: deliberate choices"). Shared by the SCIM schema,
the admin accounts and the operator commands; standard library only, so the
``simpleams`` command does not load the SCIM layer to check an address.
"""

from __future__ import annotations

import re

_ADDRESS_RE = re.compile(r"^[^@\s]+@[^@\s]+$")


def is_email_address(value: str) -> bool:
    return bool(_ADDRESS_RE.match(value))
