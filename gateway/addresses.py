"""What counts as an email address here: the ``name@domain`` shape, nothing more.

RFC 7643 §2.4 leaves canonicalisation to the service provider, and strict
validators refuse special-use domains (``corp.local``) that real directories
use (docs/scim.md, "Compliance: deliberate choices"). Shared by the SCIM schema,
the admin accounts and the operator commands; standard library only, so the
``simpleams`` command does not load the SCIM layer to check an address.

No address holds a control character, and none starts or ends with
whitespace (security review, item 11): ESC let a stored address drive the
terminal of the operator reading ``simpleams audit``, and ``other@ex.com\\n``
was a second spelling of a live user's address. "Control character" is
decided here once, for addresses, for the userName rule (gateway/scim/schema.py)
and for what ``simpleams`` escapes when it prints (gateway/cli.py), so that
what input refuses and what the command escapes are the same set:

- Cc: C0 (NUL-US, tab and newline included), DEL and C1 (U+0080-U+009F; CSI
  U+009B starts an escape sequence on its own);
- Cf: format characters, invisible when printed: zero-width spaces and joiners
  (U+200B-U+200D, a look-alike of another address), bidi overrides
  (U+202A-U+202E, U+2066-U+2069), the byte order mark, tag characters;
- Zl, Zp: U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR (line breaks to
  JSON and JavaScript readers);
- Cs: lone surrogates, which JSON can carry but no terminal or PostgreSQL can.

Other spaces (Zs: NBSP, ideographic space) are printable and not control
characters; inside an address they are whitespace and fail the shape anyway.
"""

from __future__ import annotations

import re
import unicodedata

CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})

# fullmatch, not ``$``: ``$`` also matches before a final newline.
_ADDRESS_RE = re.compile(r"[^@\s]+@[^@\s]+")


def is_control_character(char: str) -> bool:
    """Whether one character is a control character in the sense above."""
    return unicodedata.category(char) in CONTROL_CATEGORIES


def first_control_character(value: str) -> int | None:
    """The index of the first control character in ``value``, or None."""
    if value.isprintable():  # fast path: every control character is unprintable
        return None
    return next((i for i, char in enumerate(value) if is_control_character(char)), None)


def code_point(char: str) -> str:
    """``U+001B``: how a detail names a character it must not print."""
    return f"U+{ord(char):04X}"


def text_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an identifier (an address, a userName), or None.

    Said for a person to act on, without repeating the offending character.
    """
    if value != value.strip():
        where = "starts" if value[:1].isspace() else "ends"
        char = value[0] if where == "starts" else value[-1]
        return f"{where} with whitespace ({code_point(char)}); remove it"
    index = first_control_character(value)
    if index is not None:
        return (
            f"contains the control character {code_point(value[index])} at position {index + 1}; "
            "control and invisible formatting characters are not allowed"
        )
    return None


def address_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an email address, or None when it is one."""
    problem = text_problem(value)
    if problem is None and not _ADDRESS_RE.fullmatch(value):
        problem = "is not an email address (one @ between a name and a domain, no spaces)"
    return problem


def is_email_address(value: str) -> bool:
    return address_problem(value) is None
