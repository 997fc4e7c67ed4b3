"""RFC 7644 §3.4.2.2 filters and sortBy -> SQLAlchemy expressions, run by
PostgreSQL, for every resource type.

scim2-models parses the filter into an AST and binds each attribute path to
the resource type's model (type, caseExact, multi-valuedness). This module
walks that AST and emits SQL; rows are never filtered in Python. Where each
attribute is read from (a column, a folded key, the folded document, a
relation such as a group's members) is the ResourceType's to say
(gateway/scim/resources.py); nothing here is specific to users or groups.

caseExact=false text is compared folded (models/text.py): the stored side
was folded when it was written, the filter's value is folded here, once.

An operator the attribute's type does not take (``meta.created sw``,
``active gt``, ``name eq``) is a 400 invalidFilter from
attributes.check_operator.

Every leaf is made two-valued (``coalesce(…, false)``) so that ``not`` behaves
as SCIM expects: ``not (title eq "x")`` matches users without a title, where
SQL's three-valued NULL would drop them.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

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
    coerce_value,
)
from sqlalchemy import (
    ColumnElement,
    String,
    Uuid,
    and_,
    cast,
    column,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB

from gateway.scim import errors
from gateway.scim.attributes import check_operator, is_string, typed, wire_name
from gateway.scim.resources import EMPTY_ARRAY, ResourceType, parse_id
from gateway.scim.schema import POLICY, is_boolean
from models.text import fold

# Longer filters are refused before parsing: no IdP sends anything close, and
# it bounds the CPU a hostile filter can burn.
MAX_FILTER_LENGTH = 4096

# scim2-models refuses expressions nested deeper than this; redundant
# parentheses do not count there, so they are bounded before parsing.
MAX_PARENTHESES_DEPTH = 32
ORDERING = (CompareOperator.gt, CompareOperator.ge, CompareOperator.lt, CompareOperator.le)


# `userName eq "…"`: the lookup Okta and Entra make before creating or
# updating each user. Only a plain quoted value without escapes qualifies;
# anything else takes the full parser.
_USER_NAME_EQUALS = re.compile(
    r'(?:urn:ietf:params:scim:schemas:core:2\.0:User:)?userName eq "([^"\\\x00-\x1f]*)"',
    re.IGNORECASE,
)


def user_name_equals(text: str) -> str | None:
    """The folded value of a plain ``userName eq "…"`` filter, as compile_filter
    would compare it with ``users.user_name_key``, or None when the filter is
    anything else.

    The per-user lookup then runs a statement built once instead of going
    through the parser and a freshly built query (292 µs of CPU to build one
    lookup: docs/performance.md, "Statements built once").
    tests/integration/test_filters.py checks that both paths find the same
    users.
    """
    match = _USER_NAME_EQUALS.fullmatch(text)
    if match is None or len(text) > MAX_FILTER_LENGTH:
        return None
    value = match.group(1)
    if not _is_encodable(value):
        return None  # the parser words the error
    return fold(value)


def compile_filter(resource: ResourceType, text: str) -> ColumnElement[bool]:
    """Parse, validate and compile a filter; raises InvalidFilter with a reason."""
    if len(text) > MAX_FILTER_LENGTH:
        raise errors.InvalidFilter(f"The filter is longer than {MAX_FILTER_LENGTH} characters.")
    if _parentheses_depth(text) > MAX_PARENTHESES_DEPTH:
        raise errors.InvalidFilter(
            f"The filter nests parentheses more than {MAX_PARENTHESES_DEPTH} deep."
        )
    if "\x00" in text or not _is_encodable(text):
        raise errors.InvalidFilter("The filter contains a NUL or an invalid Unicode character.")
    try:
        with POLICY:
            syntax: ScimFilter[Any] = ScimFilter(text)
            # The compiler first, so that an operator the attribute's type does
            # not take is refused by our rule (attributes.check_operator), whose
            # message lists the operators it does take; then scim2-models' own
            # checks (values, write-only attributes) on the tree already parsed.
            condition = _SqlCompiler(resource, _resolver(resource)).visit(syntax.ast)
            ScimFilter[resource.model](syntax.ast)  # type: ignore[name-defined]
            return condition
    except SCIMException as exc:
        raise errors.InvalidFilter(f"Invalid filter {text!r}: {exc.detail}") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise errors.InvalidFilter(f"Invalid filter {text!r}: {exc}") from None


def _parentheses_depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]":
            depth -= 1
    return deepest


def _is_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def sort_expression(resource: ResourceType, attribute: str) -> ColumnElement[Any]:
    """The ORDER BY expression for ``sortBy`` (RFC 7644 §3.4.2.3): text that is
    caseExact=false sorts by its folded value (models/text.py)."""
    try:
        with POLICY:
            parsed = ScimFilter[resource.model](f"{attribute} pr")  # type: ignore[name-defined]
            node = parsed.ast
            if not isinstance(node, Present):
                raise ValueError("name one attribute, e.g. sortBy=name.familyName")
            binding = parsed.resolve(node.attr_path, strict=True)
            if binding is None:
                raise ValueError("unknown attribute")
    except (SCIMException, ValueError) as exc:
        raise errors.InvalidValue(f"Cannot sort by {attribute!r}: {exc}") from None
    head = resource.head(binding)
    if not resource.is_stored(resource.dotted(binding)) or head in resource.relations:
        raise errors.InvalidValue(
            f"Cannot sort by {attribute!r}: sort by one of "
            + ", ".join(
                p for p in resource.filter_attributes if p.split(".")[0] not in resource.relations
            )
            + "."
        )
    if binding.is_multivalued:
        # RFC 7644 §3.4.2.3: a multi-valued attribute sorts by its primary
        # value, or by its first one when none is primary.
        sub = (binding.sub_field_name and wire_name(binding, sub=True)) or "value"
        values = resource.json_at(resource.json_keys(binding))
        elements = (
            func.jsonb_array_elements(func.coalesce(values, EMPTY_ARRAY))
            .table_valued(column("value", JSONB))
            .alias("element")
        )
        primary = (
            select(elements.c.value[sub].astext)
            .where(elements.c.value["primary"] == literal(True, JSONB))
            .limit(1)
            .scalar_subquery()
        )
        return func.coalesce(primary, values[0][sub].astext)
    expression: ColumnElement[Any] = _Reader(resource).scalar(binding)
    return expression


@cache
def _resolver(resource: ResourceType) -> ScimFilter[Any]:
    """Binds attribute paths to the type's model (resolve / resolve_comparison
    depend on the model only, not on the filter the instance holds)."""
    with POLICY:
        return ScimFilter[resource.model]("id pr")  # type: ignore[name-defined]


class _Reader:
    """Reads an attribute of one resource type where it lives, folded when it
    is caseExact=false text (the ResourceType's columns, keys and document)."""

    def __init__(self, resource: ResourceType) -> None:
        self.resource = resource

    def scalar(self, binding: AttributeBinding) -> Any:
        resource, dotted = self.resource, self.resource.dotted(binding)
        if dotted == "meta.resourcetype":
            return literal(resource.name)
        if dotted in resource.columns:
            if is_string(binding) and not binding.case_exact and dotted in resource.keys:
                return resource.keys[dotted]
            return resource.columns[dotted]
        if not resource.is_stored(dotted):
            raise _not_filterable(resource, binding)
        keys = resource.json_keys(binding)
        if binding.sub_field_name:
            keys = [*keys, wire_name(binding, sub=True)]
        return typed(resource.json_at(keys[:-1])[keys[-1]], binding)


def _not_filterable(
    resource: ResourceType, binding: AttributeBinding | str
) -> errors.InvalidFilter:
    name = binding if isinstance(binding, str) else resource.dotted(binding)
    shown = [p for p in resource.filter_attributes]
    return errors.InvalidFilter(
        f"'{name}' cannot be used in a filter on {resource.endpoint[1:].lower()}: use "
        + ", ".join(shown[:-1])
        + f" or {shown[-1]}."
    )


class _Elements:
    """The elements of one multi-valued attribute: items of a JSON array in the
    document, or rows of a relation (a group's members)."""

    def __init__(self, resource: ResourceType, binding: AttributeBinding) -> None:
        self.resource = resource
        self.relation = resource.relations.get(resource.head(binding))
        self.name = resource.head(binding)
        self.element: Any = None
        if self.relation is None:
            self.element = (
                func.jsonb_array_elements(
                    func.coalesce(resource.json_at(resource.json_keys(binding)), EMPTY_ARRAY)
                )
                .table_valued(column("value", JSONB))
                .alias("element")
                .c.value
            )

    def sub(self, binding: AttributeBinding) -> Any:
        """The compared value of one sub-attribute (``value`` when none is named)."""
        name = wire_name(binding, sub=True) or "value"
        if self.relation is not None:
            found = self.relation.columns.get(name.lower())
            if found is None:
                raise _not_filterable(self.resource, f"{self.name}.{name.lower()}")
            return found
        return typed(self.element[name], binding)

    def present(self, binding: AttributeBinding) -> ColumnElement[bool]:
        if self.relation is not None:
            present: ColumnElement[bool] = self.sub(binding).is_not(None)
            return present
        return _present_json(self.element[wire_name(binding, sub=True) or "value"])

    def any(self, condition: ColumnElement[bool]) -> ColumnElement[bool]:
        if self.relation is not None:
            return self.relation.exists(condition)
        return select(literal(1)).select_from(self.element.table).where(condition).exists()


class _SqlCompiler(FilterVisitor[ColumnElement[bool]]):
    def __init__(
        self,
        resource: ResourceType,
        parsed: ScimFilter[Any],
        elements: _Elements | None = None,
        outer: AttrPath | None = None,
    ):
        self.resource = resource
        self.parsed = parsed
        self.read = _Reader(resource)
        # Inside a value path (emails[...]) attributes are read from one element.
        self.elements = elements
        self.outer = outer

    def visit_logical_expr(self, node: LogicalExpr) -> ColumnElement[bool]:
        terms = [self.visit(term) for term in node.terms]
        return and_(*terms) if node.op == LogicalOperator.and_ else or_(*terms)

    def visit_not(self, node: Not) -> ColumnElement[bool]:
        # SQL's NULL would make `not (title eq "x")` drop users without a
        # title; SCIM wants them. Only under NOT does NULL need folding to
        # false: elsewhere WHERE already treats it as false, and a bare
        # comparison keeps its index (`user_name_key = …`).
        return not_(func.coalesce(self.visit(node.expr), false()))

    def visit_present(self, node: Present) -> ColumnElement[bool]:
        binding = self._bind(node.attr_path, comparison=False)
        check_operator(self._name(node.attr_path), binding, "pr")
        if self.elements is not None:
            return self.elements.present(binding)
        if binding.is_multivalued:
            elements = _Elements(self.resource, binding)
            if binding.sub_field_name:
                return elements.any(elements.present(binding))
            if elements.relation is not None:
                return elements.any(true())
            location = self.resource.json_at(self.resource.json_keys(binding))
            return (func.jsonb_typeof(location) == "array") & (
                func.jsonb_array_length(func.coalesce(location, EMPTY_ARRAY)) > 0
            )
        dotted = self.resource.dotted(binding)
        if dotted == "meta.resourcetype":
            return true()
        if dotted in self.resource.columns:
            present: ColumnElement[bool] = self.resource.columns[dotted].is_not(None)
            return present
        if not self.resource.is_stored(dotted):
            raise _not_filterable(self.resource, binding)
        keys = self.resource.json_keys(binding)
        if binding.sub_field_name:
            keys = [*keys, wire_name(binding, sub=True)]
        return _present_json(self.resource.json_at(keys))

    def visit_comparison(self, node: Comparison) -> ColumnElement[bool]:
        if isinstance(node.value, str) and ("\x00" in node.value or not _is_encodable(node.value)):
            # PostgreSQL text cannot hold NUL, nor UTF-8 a lone surrogate.
            raise errors.InvalidFilter(
                f"The value compared with '{node.attr_path}' contains a NUL or an invalid "
                "Unicode character."
            )
        binding = self._bind(node.attr_path, comparison=True)
        check_operator(self._name(node.attr_path), binding, node.op.value)
        _check_literal(binding, node)
        value = coerce_value(binding, node.value, node.op)
        if self.elements is not None:
            return _compare(self.elements.sub(binding), binding, node.op, value)
        if binding.is_multivalued:
            array = self.resource.array_keys.get(
                self.resource.head(binding)
                + "."
                + (wire_name(binding, sub=True) or "value").lower()
            )
            if array is not None and node.op is CompareOperator.eq and isinstance(value, str):
                # An index lookup on the GIN array: Entra's `emails eq "x"`.
                return array.contains([fold(value)])
            if node.op is CompareOperator.ne:
                eq = Comparison(node.attr_path, CompareOperator.eq, node.value)
                return not_(self.visit_comparison(eq))
            elements = _Elements(self.resource, binding)
            any_element = elements.any(_compare(elements.sub(binding), binding, node.op, value))
            if value is None and node.op is CompareOperator.eq:
                # RFC 7643 §2.5: an unassigned attribute and null are the same state.
                if elements.relation is not None:
                    return or_(not_(elements.any(true())), any_element)
                stored = self.resource.json_at(self.resource.json_keys(binding))
                absent = func.coalesce(func.jsonb_typeof(stored), "null") == "null"
                return or_(absent, any_element)
            return any_element
        return _compare(self.read.scalar(binding), binding, node.op, value)

    def visit_value_path(self, node: ValuePath) -> ColumnElement[bool]:
        if self.elements is not None:
            raise errors.InvalidFilter("Value paths cannot be nested (RFC 7644 §3.4.2.2).")
        binding = self._bind(node.attr_path, comparison=False)
        if not binding.is_multivalued:
            raise errors.InvalidFilter(
                f"'{node.attr_path}[...]' needs a multi-valued attribute (RFC 7644 §3.4.2.2)."
            )
        elements = _Elements(self.resource, binding)
        inner = _SqlCompiler(self.resource, self.parsed, elements=elements, outer=node.attr_path)
        return elements.any(inner.visit(node.val_filter))

    def _name(self, attr_path: AttrPath) -> str:
        """The attribute as the client named it; inside ``emails[...]``, ``emails.type``."""
        if self.outer is None:
            return str(attr_path)
        return f"{self.outer}.{attr_path.attr}"

    def _bind(self, attr_path: AttrPath, *, comparison: bool) -> AttributeBinding:
        if self.outer is not None:
            if attr_path.sub_attr or attr_path.uri:
                raise errors.InvalidFilter(
                    f"Inside '{self.outer}[...]' name sub-attributes only, e.g. 'type'."
                )
            attr_path = AttrPath(attr=self.outer.attr, sub_attr=attr_path.attr, uri=self.outer.uri)
        resolve = self.parsed.resolve_comparison if comparison else self.parsed.resolve
        binding = resolve(attr_path, strict=True)
        if binding is None:
            raise errors.InvalidFilter(f"Unknown attribute '{attr_path}'.")
        if not self.resource.is_stored(self.resource.dotted(binding)):
            raise _not_filterable(self.resource, str(attr_path))
        return binding


def _check_literal(binding: AttributeBinding, node: Comparison) -> None:
    """Refuse literals of the wrong JSON type instead of coercing them ("yes" is not true)."""
    raw = node.value
    if raw is None:
        return
    if binding.target_type is bool:
        # Entra sends booleans as strings ("True"); anything else is a mistake.
        if is_boolean(raw):
            return
        raise errors.InvalidFilter(
            f"'{node.attr_path}' is a boolean: compare it with true or false."
        )
    if binding.target_type is datetime and not isinstance(raw, str):
        raise errors.InvalidFilter(
            f"'{node.attr_path}' is a dateTime: compare it with a quoted ISO 8601 time."
        )


def _compare_id(left: ColumnElement[Any], op: CompareOperator, value: Any) -> ColumnElement[bool]:
    """``eq``/``ne`` on a SCIM id as a key lookup; a value that is not one of our
    ids matches nothing. RFC 7643 §3.1: ids are caseExact, and we only ever
    issue lowercase ones."""
    scim_id = parse_id(value)
    if op is CompareOperator.eq:
        return left == scim_id if scim_id else false()
    return left != scim_id if scim_id else true()


def _present_json(value: Any) -> ColumnElement[bool]:
    present: ColumnElement[bool] = (
        value.is_not(None)
        & (func.jsonb_typeof(value) != "null")
        & (value.not_in([literal("", JSONB), EMPTY_ARRAY, literal({}, JSONB)]))
    )
    return present


def like_escape(value: str) -> str:
    """LIKE metacharacters in an IdP's value as literals (docs/dependencies.md, "PostgreSQL")."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _compare(
    left: ColumnElement[Any], binding: AttributeBinding, op: CompareOperator, value: Any
) -> ColumnElement[bool]:
    """``left`` (as _Reader or _Elements read it: folded when caseExact=false
    text) compared with a filter's value."""
    if value is None:
        if op not in (CompareOperator.eq, CompareOperator.ne):
            raise errors.InvalidFilter(f"'{op.value}' cannot compare with null.")
        return left.is_(None) if op is CompareOperator.eq else left.is_not(None)
    if isinstance(left.type, Uuid):
        if op in (CompareOperator.eq, CompareOperator.ne):
            return _compare_id(left, op, value)
        left = cast(left, String)  # `id sw "2819c223"`: the id as text
    if binding.target_type is bool:
        check_operator(binding.urn, binding, op.value)  # eq or ne, from here on
        if isinstance(left.type, JSONB):
            right: Any = literal(bool(value), JSONB)
        else:
            right = true() if value else false()
        if op is CompareOperator.eq:
            equal: ColumnElement[bool] = left == right
            return equal
        return left.is_distinct_from(right)
    if isinstance(value, bytes):
        # A binary attribute is stored as its base64 text (RFC 7643 §2.3.6);
        # scim2-models decoded the filter's value.
        value = base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        right = literal(value)
    else:
        if isinstance(value, bool | int | float) and is_string(binding):
            raise errors.InvalidFilter(f"'{binding.urn}' is a string; quote the value.")
        value = str(value)
        # Stored text is NFC (gateway/scim/schema.py) and, where caseExact=false,
        # folded: compare like with like.
        value = fold(value) if is_string(binding) and not binding.case_exact else _nfc(value)
        right = literal(value)
    if op in (CompareOperator.co, CompareOperator.sw, CompareOperator.ew):
        if not isinstance(value, str):
            raise errors.InvalidFilter(f"'{op.value}' needs a string value.")
        escaped = like_escape(value)
        pattern = {"co": f"%{escaped}%", "sw": f"{escaped}%", "ew": f"%{escaped}"}[op.value]
        return left.like(literal(pattern), escape="\\")
    if is_string(binding) and op in ORDERING:
        # Code-point order, whatever the database's locale (docker's postgres
        # image defaults to en_US), so gt/lt mean the same everywhere.
        left, right = left.collate("C"), right.collate("C")
    comparisons: dict[CompareOperator, Callable[[], ColumnElement[bool]]] = {
        CompareOperator.eq: lambda: left == right,
        CompareOperator.gt: lambda: left > right,
        CompareOperator.ge: lambda: left >= right,
        CompareOperator.lt: lambda: left < right,
        CompareOperator.le: lambda: left <= right,
    }
    if op is CompareOperator.ne:
        return left.is_distinct_from(right)
    return comparisons[op]()


def _nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value)
