"""RFC 7644 §3.4.2.2 filters -> SQLAlchemy expressions, run by PostgreSQL.

scim2-models parses the filter into an AST and binds each attribute path to
the User model (type, caseExact, multi-valuedness). This module walks that AST
and emits SQL; rows are never filtered in Python.

Where an attribute lives:

- ``id``, ``userName``, ``externalId``, ``active``, ``meta.created``,
  ``meta.lastModified``: indexed columns of ``users``;
- ``emails eq`` / ``emails.value eq``: the GIN-indexed ``email_values`` array;
- everything else: the ``attributes`` JSONB document, multi-valued attributes
  through ``EXISTS (… jsonb_array_elements …)``.

An operator the attribute's type does not take (``meta.created sw``,
``active gt``, ``name eq``) is a 400 invalidFilter from
attributes.check_operator, the rule group_filters.py applies too.

Every leaf is made two-valued (``coalesce(…, false)``) so that ``not`` behaves
as SCIM expects: ``not (title eq "x")`` matches users without a title, where
SQL's three-valued NULL would drop them.
"""

from __future__ import annotations

import base64
import re
import unicodedata
import uuid
from collections.abc import Callable
from datetime import datetime
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
    and_,
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
from gateway.scim.attributes import (
    CORE_PREFIX,
    EMPTY_ARRAY,
    check_operator,
    column_for,
    element_sql,
    is_string,
    json_at,
    json_keys,
    scalar_sql,
    users,
    wire_name,
)
from gateway.scim.schema import POLICY, ScimUser

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
    """The value of a plain ``userName eq "…"`` filter, as compile_filter would
    compare it (NFC), or None when the filter is anything else.

    The per-user lookup then runs a statement built once instead of going
    through the parser and a freshly built query (about 0.35 ms of CPU per
    lookup, BENCHMARKS.md). tests/integration/test_filters.py checks that
    both paths find the same users.
    """
    match = _USER_NAME_EQUALS.fullmatch(text)
    if match is None or len(text) > MAX_FILTER_LENGTH:
        return None
    value = match.group(1)
    if not _is_encodable(value):
        return None  # the parser words the error
    return unicodedata.normalize("NFC", value)


def compile_filter(text: str) -> ColumnElement[bool]:
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
            condition = _SqlCompiler(_RESOLVER).visit(syntax.ast)
            ScimFilter[ScimUser](syntax.ast)
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


def sort_expression(attribute: str) -> ColumnElement[Any]:
    """The ORDER BY expression for ``sortBy`` (RFC 7644 §3.4.2.3)."""
    try:
        with POLICY:
            parsed = ScimFilter[ScimUser](f"{attribute} pr")
            node = parsed.ast
            if not isinstance(node, Present):
                raise ValueError("name one attribute, e.g. sortBy=name.familyName")
            binding = parsed.resolve(node.attr_path, strict=True)
            if binding is None:
                raise ValueError("unknown attribute")
    except (SCIMException, ValueError) as exc:
        raise errors.InvalidValue(f"Cannot sort by {attribute!r}: {exc}") from None
    location = json_keys(binding)
    if binding.is_multivalued:
        # RFC 7644 §3.4.2.3: a multi-valued attribute sorts by its primary
        # value, or by its first one when none is primary.
        sub = (binding.sub_field_name and wire_name(binding, sub=True)) or "value"
        values = json_at(location)
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
        return func.lower(func.coalesce(primary, values[0][sub].astext))
    expression: ColumnElement[Any] = scalar_sql(binding)
    if is_string(binding) and not binding.case_exact:
        return func.lower(expression)
    return expression


# Binds attribute paths to the User model (resolve / resolve_comparison depend
# on the model only, not on the filter the instance holds).
with POLICY:
    _RESOLVER: ScimFilter[ScimUser] = ScimFilter[ScimUser]("id pr")


class _SqlCompiler(FilterVisitor[ColumnElement[bool]]):
    def __init__(
        self, parsed: ScimFilter[ScimUser], element: Any = None, outer: AttrPath | None = None
    ):
        self.parsed = parsed
        # Inside a value path (emails[...]) attributes are read from one array element.
        self.element = element
        self.outer = outer

    def visit_logical_expr(self, node: LogicalExpr) -> ColumnElement[bool]:
        terms = [self.visit(term) for term in node.terms]
        return and_(*terms) if node.op == LogicalOperator.and_ else or_(*terms)

    def visit_not(self, node: Not) -> ColumnElement[bool]:
        # SQL's NULL would make `not (title eq "x")` drop users without a
        # title; SCIM wants them. Only under NOT does NULL need folding to
        # false: elsewhere WHERE already treats it as false, and a bare
        # comparison keeps its index (`lower(user_name) = …`).
        return not_(func.coalesce(self.visit(node.expr), false()))

    def visit_present(self, node: Present) -> ColumnElement[bool]:
        binding = self._bind(node.attr_path, comparison=False)
        check_operator(self._name(node.attr_path), binding, "pr")
        if self.element is not None:
            return _present_json(self.element[wire_name(binding, sub=True)])
        if binding.is_multivalued:
            location = json_at(json_keys(binding))
            if binding.sub_field_name:
                return self._any_element(
                    binding, lambda e: _present_json(e[wire_name(binding, sub=True)])
                )
            return (func.jsonb_typeof(location) == "array") & (
                func.jsonb_array_length(func.coalesce(location, EMPTY_ARRAY)) > 0
            )
        column_ = column_for(binding)
        if column_ is not None:
            present: ColumnElement[bool] = column_.is_not(None)
            return present
        keys = json_keys(binding)
        if binding.sub_field_name:
            keys = [*keys, wire_name(binding, sub=True)]
        return _present_json(json_at(keys))

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
        if isinstance(value, str):
            # Stored strings are NFC (gateway/scim/schema.py); compare like with like.
            value = unicodedata.normalize("NFC", value)
        if self.element is not None:
            return _compare(element_sql(self.element, binding), binding, node.op, value)
        if binding.is_multivalued:
            if (
                _is_email_value(binding)
                and node.op is CompareOperator.eq
                and isinstance(value, str)
            ):
                # Index lookup on the GIN array: Entra's `emails eq "x"`.
                return users.email_values.contains([value.lower()])
            if node.op is CompareOperator.ne:
                eq = Comparison(node.attr_path, CompareOperator.eq, node.value)
                return not_(self.visit_comparison(eq))
            any_element = self._any_element(
                binding, lambda e: _compare(element_sql(e, binding), binding, node.op, value)
            )
            if value is None and node.op is CompareOperator.eq:
                # RFC 7643 §2.5: an unassigned attribute and null are the same state.
                stored = json_at(json_keys(binding))
                absent = func.coalesce(func.jsonb_typeof(stored), "null") == "null"
                return or_(absent, any_element)
            return any_element
        if _is_id(binding) and node.op in (CompareOperator.eq, CompareOperator.ne):
            return _compare_id(node.op, value)
        return _compare(scalar_sql(binding), binding, node.op, value)

    def visit_value_path(self, node: ValuePath) -> ColumnElement[bool]:
        if self.element is not None:
            raise errors.InvalidFilter("Value paths cannot be nested (RFC 7644 §3.4.2.2).")
        binding = self._bind(node.attr_path, comparison=False)
        if not binding.is_multivalued:
            raise errors.InvalidFilter(
                f"'{node.attr_path}[...]' needs a multi-valued attribute (RFC 7644 §3.4.2.2)."
            )
        elements = (
            func.jsonb_array_elements(func.coalesce(json_at(json_keys(binding)), EMPTY_ARRAY))
            .table_valued(column("value", JSONB))
            .alias("element")
        )
        inner = _SqlCompiler(self.parsed, element=elements.c.value, outer=node.attr_path)
        return select(literal(1)).select_from(elements).where(inner.visit(node.val_filter)).exists()

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
        return binding

    def _any_element(self, binding: AttributeBinding, condition: Any) -> ColumnElement[bool]:
        elements = (
            func.jsonb_array_elements(func.coalesce(json_at(json_keys(binding)), EMPTY_ARRAY))
            .table_valued(column("value", JSONB))
            .alias("element")
        )
        return select(literal(1)).select_from(elements).where(condition(elements.c.value)).exists()


_ENTRA_BOOLEANS = {"true", "false"}


def _check_literal(binding: AttributeBinding, node: Comparison) -> None:
    """Refuse literals of the wrong JSON type instead of coercing them ("yes" is not true)."""
    raw = node.value
    if raw is None:
        return
    if binding.target_type is bool:
        # Entra sends booleans as strings ("True"); anything else is a mistake.
        if isinstance(raw, bool) or (isinstance(raw, str) and raw.lower() in _ENTRA_BOOLEANS):
            return
        raise errors.InvalidFilter(
            f"'{node.attr_path}' is a boolean: compare it with true or false."
        )
    if binding.target_type is datetime and not isinstance(raw, str):
        raise errors.InvalidFilter(
            f"'{node.attr_path}' is a dateTime: compare it with a quoted ISO 8601 time."
        )


def _is_id(binding: AttributeBinding) -> bool:
    return binding.urn.lower() == f"{CORE_PREFIX}id".lower()


def _compare_id(op: CompareOperator, value: Any) -> ColumnElement[bool]:
    """``id eq`` as a primary-key lookup; a value that is not one of our ids matches nothing."""
    try:
        scim_id: uuid.UUID | None = uuid.UUID(str(value))
    except ValueError:
        scim_id = None
    if scim_id is not None and str(scim_id) != value:
        # RFC 7643 §3.1: id is caseExact; we only ever issue lowercase ids.
        scim_id = None
    if op is CompareOperator.eq:
        return users.scim_id == scim_id if scim_id else false()
    return users.scim_id != scim_id if scim_id else true()


def _is_email_value(binding: AttributeBinding) -> bool:
    return binding.urn.lower() == f"{CORE_PREFIX}emails.value".lower()


def _present_json(value: Any) -> ColumnElement[bool]:
    present: ColumnElement[bool] = (
        value.is_not(None)
        & (func.jsonb_typeof(value) != "null")
        & (value.not_in([literal("", JSONB), EMPTY_ARRAY, literal({}, JSONB)]))
    )
    return present


def _like_escape(value: str) -> str:
    # LIKE metacharacters in an IdP's value are literals (docs/dependencies.md, "PostgreSQL").
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _compare(
    left: ColumnElement[Any], binding: AttributeBinding, op: CompareOperator, value: Any
) -> ColumnElement[bool]:
    if value is None:
        if op not in (CompareOperator.eq, CompareOperator.ne):
            raise errors.InvalidFilter(f"'{op.value}' cannot compare with null.")
        return left.is_(None) if op is CompareOperator.eq else left.is_not(None)
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
        right = literal(str(value) if not isinstance(value, str) else value)
    if is_string(binding) and not binding.case_exact:
        left, right = func.lower(left), func.lower(right)
    if op in (CompareOperator.co, CompareOperator.sw, CompareOperator.ew):
        if not isinstance(value, str):
            raise errors.InvalidFilter(f"'{op.value}' needs a string value.")
        escaped = _like_escape(value)
        pattern: Any = literal(
            {"co": f"%{escaped}%", "sw": f"{escaped}%", "ew": f"%{escaped}"}[op.value]
        )
        if not binding.case_exact:
            # Lowercase in SQL, as the column is: Python and PostgreSQL disagree
            # on some letters (a final sigma).
            pattern = func.lower(pattern)
        return left.like(pattern, escape="\\")
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
