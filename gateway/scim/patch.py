"""PATCH (RFC 7644 §3.5.2): parse the request, apply it to one version of a user.

scim2-models applies the operations atomically (all or none); this module
normalises what Okta and Entra send before that, and notes the attributes a
PATCH touched that we do not model.
"""

from typing import Any

from pydantic import ValidationError
from scim2_models import Context, PatchOp, SCIMException

from gateway.scim import errors
from gateway.scim.limits import check_multi_valued, check_patch_size
from gateway.scim.schema import (
    CORE_USER_URN,
    ENTERPRISE_URN,
    MULTI_VALUED,
    PATCH_OP_URN,
    POLICY,
    EnterpriseUser,
    ScimUser,
    UserInput,
    check_active,
    load_stored,
    normalise_manager,
    to_input,
    translate_scim_exception,
    translate_validation_error,
)


def parse_patch(body: Any) -> PatchOp[ScimUser]:
    """Validate a PATCH body (RFC 7644 §3.5.2) into a PatchOp bound to our User."""
    if not isinstance(body, dict):
        raise errors.InvalidSyntax("The PATCH body must be a JSON object with 'Operations'.")
    operations = body.get("Operations", body.get("operations"))
    if not isinstance(operations, list) or not operations:
        raise errors.InvalidSyntax(
            "A PATCH body needs a non-empty 'Operations' list (RFC 7644 §3.5.2)."
        )
    check_patch_size(operations, MULTI_VALUED)
    cleaned = []
    for operation in operations:
        if not isinstance(operation, dict):
            raise errors.InvalidSyntax("Each PATCH operation must be a JSON object.")
        # Entra adds keys such as "name" to operations; only these three mean anything.
        op = {k: operation[k] for k in ("op", "path", "value") if k in operation}
        _normalise_patch_value(op)
        cleaned.extend(_split_filtered_keys(op))
    try:
        with POLICY:
            return PatchOp[ScimUser].model_validate(
                {"schemas": [PATCH_OP_URN], "Operations": cleaned},
                scim_ctx=Context.RESOURCE_PATCH_REQUEST,
            )
    except ValidationError as exc:
        raise translate_validation_error(exc) from None
    except SCIMException as exc:
        raise translate_scim_exception(exc) from None


def apply_patch(document: dict[str, Any], patch: PatchOp[ScimUser]) -> UserInput:
    """Apply a PATCH to one version of a user, atomically (all operations or none).

    CPU-bound for up to a few hundred milliseconds at the limits (gateway/scim/limits.py):
    the endpoint runs it in a worker thread, off the event loop.
    """
    user = load_stored(document)
    try:
        with POLICY:
            patch.patch(user)
    except ValidationError as exc:
        raise translate_validation_error(exc) from None
    except SCIMException as exc:
        raise translate_scim_exception(exc) from None
    ignored = sorted({*user.unknown_attributes, *_operation_unknowns(patch)})
    result = to_input(user, stored=document)
    check_multi_valued(result.document, MULTI_VALUED, stored=document)
    result.ignored_attributes = sorted({*result.ignored_attributes, *ignored})
    return result


def _known_names() -> frozenset[str]:
    core = {(f.serialization_alias or name).lower() for name, f in ScimUser.model_fields.items()}
    core |= {_camel(name).lower() for name in ScimUser.model_fields}
    enterprise = {_camel(name).lower() for name in EnterpriseUser.model_fields}
    return frozenset(
        core | {ENTERPRISE_URN.lower()} | {f"{ENTERPRISE_URN}:{n}".lower() for n in enterprise}
    )


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def _head_attribute(path: str) -> str:
    """The attribute a PATCH path starts with, lowercased.

    ``urn:…:User:manager.value`` -> ``urn:…:user:manager``; ``emails[type eq "w"]`` -> ``emails``.
    """
    path = path.split("[", 1)[0]
    lowered = path.lower()
    for urn in (CORE_USER_URN.lower() + ":", ""):
        if urn and lowered.startswith(urn):
            lowered = lowered[len(urn) :]
    if lowered.startswith(ENTERPRISE_URN.lower() + ":"):
        rest = lowered[len(ENTERPRISE_URN) + 1 :]
        return f"{ENTERPRISE_URN.lower()}:{rest.split('.', 1)[0]}"
    return lowered.split(".", 1)[0]


def _operation_unknowns(patch: PatchOp[ScimUser]) -> list[str]:
    """Attribute names a PATCH touched that we do not model (ignored, and noted)."""
    known = _KNOWN_NAMES
    unknown: list[str] = []
    for operation in patch.operations or []:
        if operation.path is not None:
            if _head_attribute(str(operation.path)) not in known:
                unknown.append(str(operation.path))
        elif isinstance(operation.value, dict):
            unknown += [k for k in operation.value if _head_attribute(k) not in known]
    return unknown


def _split_filtered_keys(op: dict[str, Any]) -> list[dict[str, Any]]:
    """A path-less value whose keys are value-filter paths becomes one operation per such key.

    Entra (aadOptscim062020) sends ``{"op": "Replace", "value":
    {"emails[type eq \"work\"].value": "x", "title": "T"}}``; scim2-models
    reads dotted and URN keys but not filtered ones, so those become ``path``s.
    """
    value = op.get("value")
    if op.get("path") is not None or not isinstance(value, dict):
        if isinstance(op.get("path"), str):
            check_active({op["path"]: op.get("value")})
        return [op]
    check_active(value)
    filtered = {key: item for key, item in value.items() if "[" in key}
    if not filtered:
        return [op]
    rest = {key: item for key, item in value.items() if "[" not in key}
    split = [{"op": op.get("op"), "path": key, "value": item} for key, item in filtered.items()]
    return ([{**op, "value": rest}] if rest else []) + split


def _normalise_patch_value(op: dict[str, Any]) -> None:
    value = op.get("value")
    path = op.get("path")
    if isinstance(path, str) and path.lower() == f"{ENTERPRISE_URN}:manager".lower():
        # Entra: {"op": "Add", "path": "...:manager", "value": "<manager id>"}
        if isinstance(value, str):
            op["value"] = {"value": value}
    elif isinstance(value, dict):
        manager_key = next(
            (k for k in value if k.lower() == f"{ENTERPRISE_URN}:manager".lower()), None
        )
        if manager_key and isinstance(value[manager_key], str):
            value[manager_key] = {"value": value[manager_key]}
        normalise_manager(value)


_KNOWN_NAMES = _known_names()
