"""PATCH (RFC 7644 §3.5.2) for every resource type: read, validate, apply.

One engine for users and groups:

1. ``read_operations`` checks what every PATCH body shares: an object whose
   ``Operations`` is a non-empty list of objects, ``op`` one of add, remove
   or replace (any case: Entra capitalises it), ``path`` a string when
   given, a remove naming its target, ``schemas`` (when sent) listing the
   PatchOp URN. Read-only attributes in a path-less value (Okta sends the
   group's ``id`` along with a rename) are dropped, as on POST and PUT.
2. ``validate_operations`` binds the operations to a resource type's
   scim2-models class (``PatchOp[User]``, ``PatchOp[Group]``), within the
   per-request bounds of gateway/scim/limits.py.
3. ``apply_operations`` applies them to one version of the resource,
   atomically (all operations or none), and names the attributes a PATCH
   touched that the type does not model: those are ignored, never refused,
   as on POST and PUT (a 400 would stop the customer's whole provisioning job).

What stays type-specific is only what a type stores differently: a user's
IdP quirks before validation (Entra's ``manager`` string and filtered
keys, below) and a group's membership, which is applied as changes to the
membership table, never to a loaded member list (gateway/scim/group_requests.py).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import ValidationError
from scim2_models import Context, PatchOp, Resource, SCIMException

from gateway.scim import errors
from gateway.scim.limits import check_multi_valued, check_patch_size
from gateway.scim.resources import USER, ResourceType
from gateway.scim.schema import (
    ENTERPRISE_URN,
    MULTI_VALUED,
    PATCH_OP_URN,
    POLICY,
    ScimUser,
    UserInput,
    check_active,
    load_stored,
    normalise_manager,
    to_input,
    translate_scim_exception,
    translate_validation_error,
)

OPERATIONS = ("add", "remove", "replace")
# Read-only on input (RFC 7644 §3.3): dropped from a path-less value.
_READ_ONLY = frozenset({"id", "meta", "schemas"})


def read_operations(body: Any) -> list[dict[str, Any]]:
    """The operations of a PATCH body, structurally checked, each as
    ``{"op": <lowercase>, "path": str | None, "value": …}`` (``value`` only when sent).

    Keys other than op, path and value are dropped: Entra adds ``name``.
    """
    if not isinstance(body, dict):
        raise errors.InvalidSyntax(
            "A PATCH body must be a JSON object with 'Operations' (RFC 7644 §3.5.2)."
        )
    schemas = body.get("schemas")
    named = {str(s).lower() for s in schemas} if isinstance(schemas, list) else set()
    if schemas is not None and PATCH_OP_URN.lower() not in named:
        raise errors.InvalidValue(f"A PATCH body's 'schemas' must be [{PATCH_OP_URN!r}].")
    operations = body.get("Operations", body.get("operations"))
    if not isinstance(operations, list) or not operations:
        raise errors.InvalidSyntax(
            "A PATCH body needs a non-empty 'Operations' list (RFC 7644 §3.5.2)."
        )
    return [_operation(operation, number) for number, operation in enumerate(operations, 1)]


def _operation(operation: Any, number: int) -> dict[str, Any]:
    if not isinstance(operation, dict):
        raise errors.InvalidSyntax(f"Operation {number} must be a JSON object.")
    op = operation.get("op")
    if not isinstance(op, str) or op.lower() not in OPERATIONS:
        raise errors.InvalidSyntax(
            f"Operation {number}: 'op' must be add, remove or replace, got {op!r}."
        )
    path = operation.get("path")
    if path == "":
        path = None
    if path is not None and not isinstance(path, str):
        raise errors.InvalidPath(f"Operation {number}: 'path' must be a string.")
    read: dict[str, Any] = {"op": op.lower(), "path": path}
    if "value" in operation:
        value = operation["value"]
        if path is None and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k.lower() not in _READ_ONLY}
        read["value"] = value
    if path is None:
        if read["op"] == "remove":
            raise errors.NoTarget(
                f"Operation {number}: a remove needs a 'path' (RFC 7644 §3.5.2.2)."
            )
        if not isinstance(read.get("value"), dict):
            raise errors.InvalidValue(
                f"Operation {number}: without a 'path', 'value' must be an object of attributes."
            )
    return read


def validate_operations(
    resource: ResourceType, operations: list[dict[str, Any]], multi_valued: frozenset[str]
) -> PatchOp[Any]:
    """The operations bound to the type's scim2-models class, within the
    bounds of gateway/scim/limits.py (checked first: validation costs in
    proportion to the values)."""
    check_patch_size(operations, multi_valued)
    try:
        with POLICY:
            return _patch_model(resource).model_validate(
                {"schemas": [PATCH_OP_URN], "Operations": operations},
                scim_ctx=Context.RESOURCE_PATCH_REQUEST,
            )
    except ValidationError as exc:
        raise translate_validation_error(exc) from None
    except SCIMException as exc:
        raise translate_scim_exception(exc) from None


def apply_operations(
    resource: ResourceType, target: Resource[Any], patch: PatchOp[Any]
) -> list[str]:
    """Apply a validated PATCH to ``target`` in place, all operations or none
    (scim2-models works on a copy until every operation applied); returns the
    attribute names it touched that the type does not model, sorted."""
    try:
        with POLICY:
            patch.patch(target)
    except ValidationError as exc:
        raise translate_validation_error(exc) from None
    except SCIMException as exc:
        raise translate_scim_exception(exc) from None
    unknown = set(getattr(target, "unknown_attributes", None) or ())
    known = known_names(resource)
    for operation in patch.operations or []:
        if operation.path is not None:
            if _head_attribute(resource, str(operation.path)) not in known:
                unknown.add(str(operation.path))
        elif isinstance(operation.value, dict):
            unknown |= {k for k in operation.value if _head_attribute(resource, k) not in known}
    return sorted(unknown)


@cache
def _patch_model(resource: ResourceType) -> type[PatchOp[Any]]:
    return PatchOp[resource.model]  # type: ignore[name-defined]


@cache
def known_names(resource: ResourceType) -> frozenset[str]:
    """Every attribute a PATCH of the type may name, lowercase: core ones
    bare, extension ones as ``urn:…:name``, and the extensions' URNs."""
    names = {"id", "externalid", "meta", "schemas"}
    for path in resource.schema_attributes:
        head = path.split(".", 1)[0].lower()
        names.add(head)
        if head.startswith("urn:"):
            names.add(head.rsplit(":", 1)[0])
    return frozenset(names)


def _head_attribute(resource: ResourceType, path: str) -> str:
    """The attribute a PATCH path starts with, lowercase.

    ``urn:…:User:manager.value`` -> ``urn:…:user:manager``; ``emails[type eq "w"]`` -> ``emails``.
    """
    lowered = path.split("[", 1)[0].lower()
    if lowered.startswith(resource.prefix.lower()):
        lowered = lowered[len(resource.prefix) :]
    for extension in resource.extensions:
        urn = str(extension.__schema__).lower()
        if lowered.startswith(urn + ":"):
            return f"{urn}:{lowered[len(urn) + 1 :].split('.', 1)[0]}"
    return lowered.split(".", 1)[0]


# --- users --------------------------------------------------------------------


def parse_patch(body: Any) -> PatchOp[ScimUser]:
    """A user's PATCH body, validated (RFC 7644 §3.5.2), with Entra's shapes
    normalised first (``_user_quirks``)."""
    operations = [split for op in read_operations(body) for split in _user_quirks(op)]
    return validate_operations(USER, operations, MULTI_VALUED)


def apply_patch(document: dict[str, Any], patch: PatchOp[ScimUser]) -> UserInput:
    """Apply a PATCH to one version of a user, atomically (all operations or none).

    CPU-bound for up to a few hundred milliseconds at the limits (gateway/scim/limits.py):
    the endpoint runs it in a worker thread, off the event loop.
    """
    user = load_stored(document)
    ignored = apply_operations(USER, user, patch)
    result = to_input(user, stored=document)
    check_multi_valued(result.document, MULTI_VALUED, stored=document)
    result.ignored_attributes = sorted({*result.ignored_attributes, *ignored})
    return result


def _user_quirks(op: dict[str, Any]) -> list[dict[str, Any]]:
    """What Entra sends a user, in the shapes scim2-models reads.

    - ``manager`` as a plain string (the manager's id) becomes ``{"value": id}``.
    - A path-less value whose keys are value-filter paths (aadOptscim062020:
      ``{"emails[type eq \\"work\\"].value": "x", "title": "T"}``) becomes one
      operation per such key: scim2-models reads dotted and URN keys, not filtered ones.
    - ``active`` must be a boolean or Entra's "True"/"False" (schema.check_active).
    """
    value, path = op.get("value"), op.get("path")
    manager = f"{ENTERPRISE_URN}:manager".lower()
    if path is not None:
        if path.lower() == manager and isinstance(value, str):
            op["value"] = {"value": value}
        check_active({path: op.get("value")})
        return [op]
    if not isinstance(value, dict):
        return [op]
    key = next((k for k in value if k.lower() == manager), None)
    if key is not None and isinstance(value[key], str):
        value[key] = {"value": value[key]}
    normalise_manager(value)
    check_active(value)
    filtered = {key: item for key, item in value.items() if "[" in key}
    if not filtered:
        return [op]
    rest = {key: item for key, item in value.items() if "[" not in key}
    split = [{"op": op["op"], "path": key, "value": item} for key, item in filtered.items()]
    return ([{**op, "value": rest}] if rest else []) + split
