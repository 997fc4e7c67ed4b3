"""What one resource type stores its own way: the endpoints (endpoints.py) take one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.scim.listing import Source
from gateway.scim.render import Projection
from models.outbox import Actor

Row = Any  # a row of the type's table, as its Source reads it


class Storage(ABC):
    """What one resource type stores its own way.

    Reads by id go through ``source`` (``Source.get``), as lists do. Every
    method that writes runs in the endpoint's transaction, never commits, and
    records the provisioning event of what it changed (models/outbox.py), so
    a resource and its event commit together.
    """

    source: Source
    # A PATCH answers 200 with the resource, or 204 unless a projection asks
    # (endpoints.py says why groups answer 204).
    patch_answers_resource: bool

    @abstractmethod
    def parse(self, body: Any, *, current: Row | None) -> Any:
        """A POST (``current`` None) or PUT body, validated; ``current``: the
        version a PUT replaces."""

    @abstractmethod
    def parse_patch(self, body: Any) -> Any:
        """A PATCH body, read and validated (gateway/scim/patch.py)."""

    async def create_if_new(self, conn: AsyncConnection, who: Actor, data: Any) -> Row | None:
        """The common create in one autocommitted statement, or None (the
        default) to take ``create`` in a transaction."""
        return None

    @abstractmethod
    async def create(self, conn: AsyncConnection, who: Actor, data: Any) -> Row: ...

    @abstractmethod
    async def replace(self, conn: AsyncConnection, who: Actor, current: Row, data: Any) -> Row: ...

    @abstractmethod
    async def patch(self, conn: AsyncConnection, who: Actor, current: Row, patch: Any) -> Row: ...

    @abstractmethod
    async def delete(self, conn: AsyncConnection, who: Actor, current: Row) -> None: ...

    @abstractmethod
    async def render(
        self, conn: AsyncConnection, rows: list[Row], projection: Projection, url: str
    ) -> list[dict[str, Any]]:
        """Rows -> their SCIM JSON, projected, read in ``conn`` where needed."""
