"""Request bodies in, typed SCIM users out: all input validation and IdP quirks.

scim2-models does the RFC 7643 validation; this module wraps it so that the
rest of the gateway never sees a raw body. What we tolerate beyond the strict
RFC reading, and why:

- Unknown attributes (an admin's custom Okta/Entra mapping such as
  ``mailNickname``) are dropped and reported, never rejected: a 400 there would
  stop the customer's whole provisioning job.
- Entra sends booleans as strings ("True"/"False") and ``op`` capitalised;
  scim2-models coerces both.
- Entra sends the enterprise ``manager`` as a plain string (the manager's id);
  we wrap it as ``{"value": ...}``.
- Entra replaces ``emails[type eq "work"].value`` on a user who has no work
  email yet, expecting it to be added (``unmatched_path_filter=create``), and
  removes members with a ``value`` (``remove_value_as_filter=apply``).
- ``password`` is never stored: SimpleAMS users sign in through SAML SSO.
"""

import unicodedata
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import Field, ValidationError
from scim2_models import (
    URN,
    CaseExact,
    ComplexAttribute,
    Context,
    Extension,
    Mutability,
    Reference,
    Required,
    Resource,
    SCIMException,
    ScimPolicy,
)
from scim2_models import Email as CoreEmail
from scim2_models import User as CoreUser

from gateway.addresses import address_problem, text_problem
from gateway.scim import errors
from gateway.scim.limits import check_multi_valued

ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE_USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_OP_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class Manager(ComplexAttribute):
    # RFC 7643 §4.3 describes $ref, but neither Okta nor Entra sends one: both
    # send only the manager's id, so $ref is optional here (scim2-models
    # requires it). "User" is the name of the referenced resource type, as a
    # string on purpose (this module avoids postponed annotations: pydantic
    # would resolve it to our User class).
    value: Annotated[str | None, CaseExact.true] = None
    ref: Annotated[Reference["User"] | None, Required.false] = Field(
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    display_name: Annotated[str | None, Mutability.read_only] = None


class EnterpriseUser(Extension):
    __schema__ = URN(ENTERPRISE_URN)

    employee_number: str | None = None
    cost_center: str | None = None
    organization: str | None = None
    division: str | None = None
    department: str | None = None
    manager: Manager | None = None


# Values that go into unique B-tree indexes must stay well under PostgreSQL's
# index row limit (~2.7 kB); no directory has userNames or emails this long.
MAX_INDEXED_LENGTH = 512


class Email(CoreEmail):
    # pydantic's EmailStr refuses special-use domains such as `corp.local`,
    # which AD-backed directories synced to Entra really use; a 400 would stop
    # the customer's whole provisioning job. RFC 7643 §2.4 leaves
    # canonicalisation to the service provider. The address rule
    # (gateway/addresses.py) is applied by to_input, to the values a request
    # sets: as a validator here it would also refuse to load a user stored
    # before a rule tightened, and no GET or PATCH of that user would work.
    value: str | None = None


class User(CoreUser):  # type: ignore[type-arg]
    emails: list[Email] | None = None  # type: ignore[assignment]  # a plainer Email, same wire shape
    Emails: ClassVar[type[ComplexAttribute]] = Email


ScimUser = User[EnterpriseUser]  # type: ignore[type-arg]  # generic at runtime (Resource)

# The multi-valued attributes a client may write to a User, lowercased
# (gateway/scim/limits.py bounds them; read-only groups are ignored on input).
MULTI_VALUED = frozenset(
    attribute.name.lower()
    for model in (ScimUser, EnterpriseUser)
    for attribute in model.to_schema().attributes or []
    if attribute.multi_valued and attribute.name and attribute.mutability != Mutability.read_only
)

POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)

# Read-only on input (RFC 7643 §3.1, §4.1.2): ignored, as RFC 7644 §3.3 allows.
_IGNORED_ON_INPUT = ("id", "meta", "groups")


@dataclass
class UserInput:
    """A validated user, ready to store.

    :param document: the SCIM representation we store (wire names, no id/meta).
    :param ignored_attributes: attribute names the client sent that we do not model.
    """

    document: dict[str, Any]
    ignored_attributes: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(self.document.get("active", True))


def parse_user(
    body: Any, *, replacing: bool = False, stored: dict[str, Any] | None = None
) -> UserInput:
    """Validate a POST (``replacing=False``) or PUT body; ``stored``: the version a
    PUT replaces (values it already held are not refused by rules made since)."""
    if not isinstance(body, dict):
        raise errors.InvalidSyntax("The request body must be a JSON object describing a User.")
    body = {k: v for k, v in body.items() if k not in _IGNORED_ON_INPUT}
    # Before validation, which costs in proportion to the values.
    check_multi_valued(body, MULTI_VALUED, stored)
    normalise_manager(body)
    check_active(body)
    # Okta and some clients omit "schemas"; the endpoint already says it is a User.
    body.setdefault("schemas", [CORE_USER_URN])
    user = validate(ScimUser, body, replacing=replacing)
    return to_input(user, stored=stored)


M = TypeVar("M", bound=Resource[Any])


def validate(model: type[M], body: dict[str, Any], *, replacing: bool) -> M:
    """A POST (``replacing=False``) or PUT body validated by scim2-models against
    a resource type's schema, under our policy, its errors as SCIM errors: the
    one way every resource type's body is validated."""
    context = (
        Context.RESOURCE_REPLACEMENT_REQUEST if replacing else Context.RESOURCE_CREATION_REQUEST
    )
    try:
        with POLICY:
            return model.model_validate(body, scim_ctx=context)
    except ValidationError as exc:
        raise translate_validation_error(exc) from None
    except SCIMException as exc:
        raise translate_scim_exception(exc) from None


def load_stored(document: dict[str, Any]) -> ScimUser:
    """Rebuild the model of a stored document (for PATCH and projections)."""
    with POLICY:
        return ScimUser.model_validate(document, scim_ctx=Context.DEFAULT)


def to_input(user: ScimUser, stored: dict[str, Any] | None = None) -> UserInput:
    """The document to store for a validated user; ``stored``: the version a
    PATCH was applied to (its identifiers are not checked again)."""
    ignored = _unknown_attribute_names(user)
    if user.password is not None:
        ignored.append("password")
        user.password = None
    if not (user.user_name or "").strip():
        raise errors.InvalidValue("'userName' is required and cannot be empty (RFC 7643 §4.1.1).")
    for name, value in (("userName", user.user_name), ("externalId", user.external_id)):
        if value is not None and len(value) > MAX_INDEXED_LENGTH:
            raise errors.InvalidValue(f"'{name}' is at most {MAX_INDEXED_LENGTH} characters.")
    document = _nfc(user.model_dump(scim_ctx=Context.DEFAULT, exclude={"id", "meta", "groups"}))
    check_identifiers(document, stored)
    return UserInput(document=document, ignored_attributes=sorted(set(ignored)))


def user_name_problem(value: str) -> str | None:
    """What is wrong with a userName, or None: no control or invisible formatting
    character, no whitespace around it (gateway/addresses.py says which
    characters those are). userName is the IdP's key for the user: ``bob`` and
    ``bob\\n`` would be two live users who look like one, and ESC in it drives
    the terminal of an operator reading the audit log."""
    return text_problem(value)


def check_identifiers(document: dict[str, Any], stored: dict[str, Any] | None = None) -> None:
    """Refuse a userName, externalId or email value that breaks its rule, naming it.

    Only the values a request sets are checked: a PUT or PATCH of a user stored
    before the rules tightened that keeps those values (a leaver's
    deactivation) still applies; ``stored`` is that version (None for a POST).
    """
    stored_emails = frozenset(_email_values(stored)) if stored is not None else frozenset()
    for name in ("userName", "externalId"):  # both are keys IdPs look users up by
        value = document.get(name)
        if isinstance(value, str) and (stored is None or value != stored.get(name)):
            problem = user_name_problem(value)
            if problem:
                raise errors.InvalidValue(f"'{name}' {problem}.")
    for index, email in enumerate(document.get("emails") or []):
        value = email.get("value") if isinstance(email, dict) else None
        if not isinstance(value, str) or value in stored_emails:
            continue
        problem = address_problem(value)
        if problem is None and len(value) > MAX_INDEXED_LENGTH:
            problem = f"is longer than {MAX_INDEXED_LENGTH} characters"
        if problem:
            raise errors.InvalidValue(f"'emails[{index}].value' {problem}.")


def _email_values(document: dict[str, Any]) -> list[str]:
    emails = document.get("emails")
    if not isinstance(emails, list):
        return []
    return [e["value"] for e in emails if isinstance(e, dict) and isinstance(e.get("value"), str)]


def _nfc(value: Any) -> Any:
    """Store text in Unicode NFC, so a decomposed "é" and a composed one are the
    same userName, email or filter value (RFC 7644 §5 asks for normalised names)."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {key: _nfc(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nfc(item) for item in value]
    return value


def _unknown_attribute_names(user: ScimUser) -> list[str]:
    names = list(user.unknown_attributes)
    for attr in ("name",):
        sub = getattr(user, attr)
        if sub is not None:
            names += [f"{attr}.{key}" for key in sub.unknown_attributes]
    ext = user[EnterpriseUser]
    if ext is not None:
        names += [f"{ENTERPRISE_URN}:{key}" for key in ext.unknown_attributes]
    return names


_BOOLEAN_STRINGS = {"true", "false"}


def is_boolean(value: Any) -> bool:
    # Entra may send "active" as the string "True"/"False"; scim2-models would
    # also take "yes" or 1, which is a mistake worth a 400.
    return isinstance(value, bool) or (isinstance(value, str) and value.lower() in _BOOLEAN_STRINGS)


def check_active(body: dict[str, Any]) -> None:
    for key, value in body.items():
        is_active = key.lower() in ("active", f"{CORE_USER_URN}:active".lower())
        if is_active and value is not None and not is_boolean(value):
            raise errors.InvalidValue(f"'active' must be true or false, got {value!r}.")


def normalise_manager(body: dict[str, Any]) -> None:
    # Entra may send the enterprise manager as a plain string (the manager's id).
    extension = body.get(ENTERPRISE_URN)
    if isinstance(extension, dict) and isinstance(extension.get("manager"), str):
        extension["manager"] = {"value": extension["manager"]}


def translate_validation_error(exc: ValidationError) -> errors.ScimError:
    """Turn a pydantic error from scim2-models into our SCIM error, naming the attribute."""
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "Operations")
    context = first.get("ctx") or {}
    scim_type = context.get("scim_type") if first["type"].startswith("scim_") else None
    message = str(first.get("msg", "is not valid"))
    detail = f"'{location}': {message}" if location else message
    return _error_for(scim_type, detail)


def translate_scim_exception(exc: SCIMException) -> errors.ScimError:
    return _error_for(exc.scim_type or None, exc.detail, status=exc.status)


_BY_SCIM_TYPE: dict[str, type[errors.ScimError]] = {
    "invalidFilter": errors.InvalidFilter,
    "tooMany": errors.TooMany,
    "uniqueness": errors.Uniqueness,
    "mutability": errors.Mutability,
    "invalidSyntax": errors.InvalidSyntax,
    "invalidPath": errors.InvalidPath,
    "noTarget": errors.NoTarget,
    "invalidValue": errors.InvalidValue,
    "invalidVers": errors.InvalidVersion,
}


def _error_for(scim_type: str | None, detail: str, status: int | None = None) -> errors.ScimError:
    cls = _BY_SCIM_TYPE.get(scim_type or "", errors.InvalidValue)
    if status == 404:
        cls = errors.NotFound
    return cls(detail)
