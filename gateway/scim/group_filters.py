"""RFC 7644 §3.4.2.2 filters on Groups -> SQL over ``groups`` and ``group_members``.

scim2-models parses and validates the filter against the Group schema; this
walks the AST. Okta and Entra filter groups by ``displayName eq`` (Entra
always with ``excludedAttributes=members``) and by ``externalId eq``; the rest
of the grammar (and/or/not, co/sw/ew/pr, ``members[value eq "…"]``,
``members eq "…"``) works too, on the indexed columns and the membership table.
An operator the attribute's type does not take (``meta.created sw``) is a 400
invalidFilter from attributes.check_operator, the rule filters.py applies too.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from scim2_models import Group as ScimGroup
from scim2_models import SCIMException, ScimFilter
from scim2_models.path import (
    AttributeBinding,
    AttrPath,
    CompareOperator,
    Comparison,
    FilterVisitor,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    cast,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from gateway.scim import errors
from gateway.scim.attributes import check_operator
from gateway.scim.filters import _like_escape
from models.groups import Group, GroupMember
from models.users import User

MAX_FILTER_LENGTH = 4096

# Every attribute path a /Groups filter accepts; the other attributes of the
# Group schema (members.display, members.type, members.$ref, meta.location…)
# are refused with this list.
GROUP_FILTER_ATTRIBUTES = (
    "id",
    "externalId",
    "displayName",
    "members",
    "members.value",
    "meta.created",
    "meta.lastModified",
)


def compile_group_filter(text: str) -> ColumnElement[bool]:
    """Parse and compile a filter on groups; raises InvalidFilter with a reason."""
    if len(text) > MAX_FILTER_LENGTH:
        raise errors.InvalidFilter(f"The filter is longer than {MAX_FILTER_LENGTH} characters.")
    if "\x00" in text:
        raise errors.InvalidFilter("The filter contains a NUL character.")
    try:
        syntax: ScimFilter[Any] = ScimFilter(text)
        # As for users (filters.compile_filter): our operator rule first, then
        # scim2-models' own checks on the tree already parsed.
        condition = _GroupSql().visit(syntax.ast)
        ScimFilter[ScimGroup](syntax.ast)
        return condition
    except SCIMException as exc:
        raise errors.InvalidFilter(f"Invalid filter {text!r}: {exc.detail}") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise errors.InvalidFilter(f"Invalid filter {text!r}: {exc}") from None


# Binds attribute paths to the Group model (resolve_comparison depends on the
# model only, not on the filter the instance holds).
_RESOLVER: ScimFilter[ScimGroup] = ScimFilter[ScimGroup]("id pr")


def _name(path: AttrPath) -> str:
    name = path.attr if not path.sub_attr else f"{path.attr}.{path.sub_attr}"
    return name.lower()


def _unsupported(attribute: str) -> errors.InvalidFilter:
    return errors.InvalidFilter(
        f"'{attribute}' cannot be used in a filter on groups: use "
        + ", ".join(GROUP_FILTER_ATTRIBUTES[:-1])
        + f" or {GROUP_FILTER_ATTRIBUTES[-1]}."
    )


def _has_member(condition: Any) -> ColumnElement[bool]:
    """Some live member of the group satisfies ``condition`` (on ``users``)."""
    return (
        select(literal(1))
        .select_from(GroupMember)
        .join(User, User.id == GroupMember.user_id)
        .where(GroupMember.group_id == Group.id, User.deleted_at.is_(None), condition)
        .correlate(Group)
        .exists()
    )


class _GroupSql(FilterVisitor[ColumnElement[bool]]):
    def __init__(self, inside_members: bool = False) -> None:
        self.inside_members = inside_members

    def visit_logical_expr(self, node: LogicalExpr) -> ColumnElement[bool]:
        terms = [self.visit(term) for term in node.terms]
        return and_(*terms) if node.op == LogicalOperator.and_ else or_(*terms)

    def visit_not(self, node: Not) -> ColumnElement[bool]:
        return not_(func.coalesce(self.visit(node.expr), false()))

    def _attribute(self, path: AttrPath, op: str) -> tuple[str, str]:
        """The attribute as the client named it and its lowercase dotted name,
        once ``op`` is known to apply to its type (attributes.check_operator)."""
        if self.inside_members:
            if path.sub_attr or path.uri:
                raise errors.InvalidFilter(
                    "Inside 'members[...]' name sub-attributes only, e.g. 'value'."
                )
            path = AttrPath(attr="members", sub_attr=path.attr)
        resolve = _RESOLVER.resolve if op == "pr" else _RESOLVER.resolve_comparison
        binding: AttributeBinding | None = resolve(path, strict=False)
        if binding is None:
            raise _unsupported(str(path))
        check_operator(str(path), binding, op)
        return str(path), _name(path)

    def visit_present(self, node: Present) -> ColumnElement[bool]:
        shown, name = self._attribute(node.attr_path, "pr")
        if name in ("id", "displayname", "meta.created", "meta.lastmodified"):
            return true()
        if name == "externalid":
            return Group.external_id.is_not(None)
        if name in ("members", "members.value"):
            return _has_member(true())
        raise _unsupported(shown)

    def visit_value_path(self, node: ValuePath) -> ColumnElement[bool]:
        if _name(node.attr_path) != "members" or self.inside_members:
            raise errors.InvalidFilter(
                f"'{node.attr_path}[...]': groups have one multi-valued attribute, 'members'."
            )
        return _GroupSql(inside_members=True).visit(node.val_filter)

    def visit_comparison(self, node: Comparison) -> ColumnElement[bool]:
        shown, name = self._attribute(node.attr_path, node.op.value)
        value, op = node.value, node.op
        if name in ("members", "members.value"):
            if op not in (CompareOperator.eq, CompareOperator.ne):
                # A member's id as text: `members sw "2819c223"`.
                return _has_member(_text(cast(User.scim_id, String), op, value, lower=False))
            member = (
                _has_member(User.scim_id == _uuid_or_none(value))
                if _uuid_or_none(value)
                else false()
            )
            return member if op is CompareOperator.eq else not_(member)
        if name == "id":
            if op not in (CompareOperator.eq, CompareOperator.ne):
                return _text(cast(Group.id, String), op, value, lower=False)
            same = Group.id == _uuid_or_none(value) if _uuid_or_none(value) else false()
            return same if op is CompareOperator.eq else not_(same)
        if name in ("meta.created", "meta.lastmodified"):
            column = Group.created_at if name == "meta.created" else Group.updated_at
            return _ordered(column, op, _datetime(node.attr_path, value))
        if name == "displayname":
            return _text(func.lower(Group.display_name), op, value, lower=True)
        if name == "externalid":
            return _text(Group.external_id, op, value, lower=False)
        raise _unsupported(shown)


def _datetime(path: AttrPath, value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise errors.InvalidFilter(
            f"'{path}' needs an RFC 3339 date-time, e.g. \"2026-01-31T09:00:00Z\"."
        ) from None
    if parsed.tzinfo is None:
        raise errors.InvalidFilter(f"'{path}' needs a date-time with a time zone (Z or +01:00).")
    return parsed


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _text(left: Any, op: CompareOperator, value: Any, *, lower: bool) -> ColumnElement[bool]:
    if value is None:
        if op not in (CompareOperator.eq, CompareOperator.ne):
            raise errors.InvalidFilter(f"'{op.value}' cannot compare with null.")
        absent: ColumnElement[bool] = (
            left.is_(None) if op is CompareOperator.eq else left.is_not(None)
        )
        return absent
    if not isinstance(value, str):
        raise errors.InvalidFilter("Group names and external ids are strings; quote the value.")
    text = value.lower() if lower else value
    if op in (CompareOperator.co, CompareOperator.sw, CompareOperator.ew):
        escaped = _like_escape(text)
        pattern = {"co": f"%{escaped}%", "sw": f"{escaped}%", "ew": f"%{escaped}"}[op.value]
        matched: ColumnElement[bool] = left.like(literal(pattern), escape="\\")
        return matched
    if op is CompareOperator.ne:
        different: ColumnElement[bool] = left.is_distinct_from(literal(text))
        return different
    if op in (CompareOperator.gt, CompareOperator.ge, CompareOperator.lt, CompareOperator.le):
        return _ordered(left.collate("C"), op, literal(text).collate("C"))
    equal: ColumnElement[bool] = left == literal(text)
    return equal


def _ordered(left: Any, op: CompareOperator, right: Any) -> ColumnElement[bool]:
    comparisons = {
        CompareOperator.eq: lambda: left == right,
        CompareOperator.ne: lambda: left != right,
        CompareOperator.gt: lambda: left > right,
        CompareOperator.ge: lambda: left >= right,
        CompareOperator.lt: lambda: left < right,
        CompareOperator.le: lambda: left <= right,
    }
    if op not in comparisons:  # co/sw/ew: attributes.check_operator refused them already
        raise errors.InvalidFilter(f"'{op.value}' cannot order values.")
    result: ColumnElement[bool] = comparisons[op]()
    return result
