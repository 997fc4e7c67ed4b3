"""Paging through a resource type without work proportional to the directory
(gateway/scim/listing.py plans which request takes which path).

Two methods, both in the default order (``created_at, id``, which the
``ix_users_live_created`` index reads in order):

- **Cursors** (RFC 9865): ``cursor=`` asks for the first page and each answer
  carries ``nextCursor`` (and ``previousCursor``). A cursor is the keyset
  position of a page's last (or first) row plus a fingerprint of the query it
  belongs to, base64url-encoded: every page is an index range scan, and
  cursors never expire.
- **startIndex** (RFC 7644 §3.4.2.4), which Okta's import uses: 1, 101, 201…
  Each page served remembers, per process, where the next one starts
  (``IndexPositions``), so the usual sequential read is a keyset scan too;
  any other startIndex falls back to OFFSET, which is correct, only slower.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import orjson

from gateway.bounded import BoundedMap
from gateway.scim import errors

Position = tuple[datetime, uuid.UUID]


class InvalidCursor(errors.ScimError):
    scim_type = "invalidCursor"
    default_detail = (
        "The cursor is not one this server gave out for this query. Send cursor= (empty) for "
        "the first page, then the nextCursor or previousCursor of the previous answer, with "
        "the same filter."
    )


def fingerprint(tenant_id: uuid.UUID, filter_text: str | None, resource: str = "User") -> str:
    """What a cursor or a remembered position belongs to: this tenant, this
    resource type, this filter. (Users' material is as it was before other
    types could page, so that their cursors, which never expire, stay valid.)"""
    scope = "" if resource == "User" else f"{resource}\x00"
    material = f"{scope}{tenant_id}\x00{filter_text or ''}".encode()
    return hashlib.sha256(material).hexdigest()[:16]


@dataclass(frozen=True)
class Cursor:
    direction: Literal["next", "previous"]
    position: Position
    query: str

    def encode(self) -> str:
        raw = orjson.dumps(
            [self.direction[0], self.position[0].isoformat(), str(self.position[1]), self.query]
        )
        # base64url without padding: only RFC 3986 unreserved characters (RFC 9865 §2).
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str, query: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            direction, created, user_id, for_query = orjson.loads(raw)
            if not all(isinstance(part, str) for part in (direction, created, user_id, for_query)):
                raise InvalidCursor()
            cursor = cls(
                direction="next" if direction == "n" else "previous",
                position=(datetime.fromisoformat(created), uuid.UUID(user_id)),
                query=str(for_query),
            )
        except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
            raise InvalidCursor() from None
        if direction not in ("n", "p") or cursor.position[0].tzinfo is None:
            raise InvalidCursor()
        if cursor.query != query:
            raise InvalidCursor(
                "This cursor belongs to another query (a different filter); page with the "
                "filter the cursor was given for, or start again with cursor= (empty)."
            )
        return cursor


class IndexPositions:
    """Where startIndex N of a query starts, as a keyset position: remembered from the
    page that ended just before it, so the next page of a sequential read needs no OFFSET.

    :param size: positions kept (least recently used go first); one per reader
        of a directory mid-import, so small.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._positions: BoundedMap[tuple[str, int], Position] = BoundedMap(size)

    def get(self, query: str, start_index: int) -> Position | None:
        return self._positions.get((query, start_index))

    def remember(self, query: str, start_index: int, position: Position) -> None:
        self._positions.put((query, start_index), position)
