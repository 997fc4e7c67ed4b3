"""Assets and checkouts, and the checkout lock a leaver gets.

``check_out`` refuses a locked user; ``apply_checkout_lock`` makes the lock
match the user's *current* state (deactivated or deleted by the IdP ->
locked, open checkouts flagged for recovery; active -> unlocked). Because it
reads the current state rather than trusting the event that triggered it,
lock tasks converge whatever order they run in. History is never deleted:
check-in sets ``returned_at``.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    String,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, created_at, uuid_pk
from models.guard import is_tripped
from models.text import fold
from models.users import User


class Asset(Base):
    __tablename__ = "assets"
    __table_args__ = (Index("uq_assets_tenant_tag", "tenant_id", "tag", unique=True),)

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(64))
    name: Mapped[str]
    created_at: Mapped[created_at]


class Checkout(Base):
    __tablename__ = "checkouts"
    __table_args__ = (
        # An asset is out with one person at a time.
        Index(
            "uq_checkouts_open_per_asset",
            "asset_id",
            unique=True,
            postgresql_where=text("returned_at IS NULL"),
        ),
        Index("ix_checkouts_user", "user_id", "checked_out_at"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    asset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("assets.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    checked_out_at: Mapped[created_at]
    returned_at: Mapped[datetime | None]
    # Set while the holder is locked out (deactivated or deleted by the IdP):
    # someone must get the asset back.
    recovery_flagged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CheckoutRefused(Exception):
    """A checkout or check-in that the rules forbid, with a message for the operator."""


@dataclass(frozen=True)
class LockResult:
    locked: bool
    flagged: int
    unflagged: int


def is_locked_out(user: User, guard_tripped: bool = False) -> bool:
    """Locked by the worker, or deactivated/deleted by the IdP (unless the
    mass-deprovision guard is holding deactivations for an admin to review)."""
    left = not user.active or user.deleted_at is not None
    return bool(user.checkout_locked or (left and not guard_tripped))


def check_out(session: Session, tenant_id: uuid.UUID, email: str, tag: str) -> Checkout:
    # Emails are unique among live users only: prefer the live one, else the
    # most recently deleted (so the "locked out" answer still names them).
    user = session.scalars(
        select(User)
        .where(User.tenant_id == tenant_id, User.email_key == fold(email))
        .order_by(User.deleted_at.desc().nulls_first())
        .limit(1)
    ).one_or_none()
    if user is None:
        raise CheckoutRefused(f"No staff member with the email {email!r} in this workspace.")
    # Refuse on the user's state too, not only on the lock: the lock is set by
    # a worker moments after the IdP deactivates someone.
    if is_locked_out(user, guard_tripped=is_tripped(session, tenant_id)):
        raise CheckoutRefused(
            f"{email} is locked out of checkouts: the identity provider deactivated or removed "
            "them. Re-enable them in the IdP to restore access."
        )
    asset = session.scalars(
        select(Asset).where(Asset.tenant_id == tenant_id, Asset.tag == tag).with_for_update()
    ).one_or_none()
    if asset is None:
        asset = Asset(tenant_id=tenant_id, tag=tag, name=tag)
        session.add(asset)
        session.flush()
    holder = session.scalars(
        select(Checkout).where(Checkout.asset_id == asset.id, Checkout.returned_at.is_(None))
    ).one_or_none()
    if holder is not None:
        raise CheckoutRefused(f"Asset {tag} is already checked out; check it in first.")
    checkout = Checkout(tenant_id=tenant_id, asset_id=asset.id, user_id=user.id)
    session.add(checkout)
    session.flush()
    return checkout


def check_in(session: Session, tenant_id: uuid.UUID, tag: str) -> Checkout:
    checkout = session.scalars(
        select(Checkout)
        .join(Asset, Asset.id == Checkout.asset_id)
        .where(Asset.tenant_id == tenant_id, Asset.tag == tag, Checkout.returned_at.is_(None))
        .with_for_update()
    ).one_or_none()
    if checkout is None:
        raise CheckoutRefused(f"Asset {tag} is not checked out.")
    checkout.returned_at = func.now()
    checkout.recovery_flagged_at = None
    session.flush()
    return checkout


def apply_checkout_lock(session: Session, user_id: uuid.UUID) -> LockResult:
    """Make the user's lock and their open checkouts' flags match their current state."""
    return apply_checkout_locks(session, [user_id])[user_id]


def apply_checkout_locks(
    session: Session, user_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, LockResult]:
    """``apply_checkout_lock`` for many users at once: four statements, not four per user."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    # Row locks in id order first: two tasks over overlapping users take
    # them in the same order and cannot deadlock (an UPDATE's order is the
    # plan's). FOR NO KEY UPDATE, as the UPDATE below would take.
    session.execute(
        select(User.id).where(User.id.in_(ids)).order_by(User.id).with_for_update(key_share=True)
    )
    locks = dict(
        session.execute(
            update(User)
            .where(User.id.in_(ids))
            .values(checkout_locked=or_(User.active.is_(False), User.deleted_at.is_not(None)))
            .returning(User.id, User.checkout_locked)
            .execution_options(synchronize_session=False)
        ).all()
    )
    if len(locks) < len(ids):
        raise NoResultFound(f"users {sorted(set(ids) - set(locks))} do not exist")
    to_lock = [user_id for user_id, locked in locks.items() if locked]
    to_unlock = [user_id for user_id, locked in locks.items() if not locked]
    flagged = Counter(
        _touched_holders(session, to_lock, Checkout.recovery_flagged_at.is_(None), func.now())
    )
    unflagged = Counter(
        _touched_holders(session, to_unlock, Checkout.recovery_flagged_at.is_not(None), None)
    )
    return {
        user_id: LockResult(locked=locked, flagged=flagged[user_id], unflagged=unflagged[user_id])
        for user_id, locked in locks.items()
    }


def _touched_holders(
    session: Session, user_ids: list[uuid.UUID], unless_already: Any, flag: Any
) -> list[uuid.UUID]:
    """Set the recovery flag of these users' open checkouts; returns one holder per checkout."""
    if not user_ids:
        return []
    return list(
        session.scalars(
            update(Checkout)
            .where(Checkout.user_id.in_(user_ids), Checkout.returned_at.is_(None), unless_already)
            .values(recovery_flagged_at=flag)
            .returning(Checkout.user_id)
            .execution_options(synchronize_session=False)
        )
    )


def open_checkouts(session: Session, user_id: uuid.UUID) -> list[tuple[str, str, datetime]]:
    """(tag, name, checked out at) of what the user still holds."""
    rows = session.execute(
        select(Asset.tag, Asset.name, Checkout.checked_out_at)
        .join(Asset, Asset.id == Checkout.asset_id)
        .where(Checkout.user_id == user_id, Checkout.returned_at.is_(None))
        .order_by(Asset.tag)
    ).all()
    return [(row.tag, row.name, row.checked_out_at) for row in rows]
