"""Case-insensitive text: the one fold every caseExact=false comparison uses.

RFC 7643 §2.1 lets a caseExact=false attribute match whatever its case; it
does not say which case mapping. Ours is Unicode full case folding
(``str.casefold``: final sigma, ß and SS, dotted capital I) of NFC text, and
it is computed in Python only. Values are folded once when they are written,
into indexed key columns (``users.user_name_key``, ``groups.display_name_key``…)
and the folded copy of a user's document (``users.folded``); a filter folds
its value once with the same function. PostgreSQL then compares folded text
with folded text, so Python and the database cannot disagree on a letter (as
``lower()`` and ``str.lower`` do on the final sigma).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from typing import Any

# A path in a document: its keys lowercased, e.g. ("emails", "value") or
# ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:user", "manager", "value").
Path = tuple[str, ...]


def fold(value: str) -> str:
    """NFC, then full case folding, then NFC again (folding can decompose)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).casefold())


def fold_or_none(value: str | None) -> str | None:
    return None if value is None else fold(value)


def fold_document(document: dict[str, Any], case_exact: Collection[Path]) -> dict[str, Any]:
    """The document with every string folded, except at the ``case_exact`` paths.

    Lists are walked element by element under the same path (``emails`` then
    ``value``), so a value filter (``emails[type eq "work" and primary eq
    true]``) reads every sub-attribute of one element from one place.
    """
    return {key: _fold_at(value, (key.lower(),), case_exact) for key, value in document.items()}


def _fold_at(value: Any, path: Path, case_exact: Collection[Path]) -> Any:
    if isinstance(value, str):
        return value if path in case_exact else fold(value)
    if isinstance(value, dict):
        return {
            key: _fold_at(item, (*path, key.lower()), case_exact) for key, item in value.items()
        }
    if isinstance(value, list):
        return [_fold_at(item, path, case_exact) for item in value]
    return value
