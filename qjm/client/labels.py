"""One rule for the text a user labels a job set with: its name and its tags.

A label is stored in Redis, indexed for ``job_sets()``, printed back in terminals (``qjm list``,
reports) and, for tags, sent to the service on every remote job. So every entry (``run``,
``update_name``, ``update_tags``, the CLI) checks it the same way, before anything is written:
a string, not blank, within a length limit, and without control characters (Unicode category
Cc, NUL among them) or bidirectional formatting characters, with which a label could rewrite
the line it is shown on (U+202E shows the rest of a line backwards).
"""

from __future__ import annotations

import unicodedata

from ..errors import InvalidInputError

#: The longest name a job set takes (a tag's limit is the service's: ``qjm.client.tags``).
MAX_NAME_LENGTH = 200
#: Unicode's bidirectional formatting characters: embeddings and overrides (U+202A-U+202E),
#: isolates (U+2066-U+2069) and the marks (U+200E, U+200F, U+061C).
BIDI_FORMATTING = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
#: How much of a refused label a message repeats.
SHOWN = 24


def _shown(text: str) -> str:
    """The label as a message may show it: ``repr`` escapes what a terminal would act on."""
    return repr(text) if len(text) <= SHOWN else repr(text[:SHOWN]) + "..."


def forbidden(text: str) -> tuple[int, str] | None:
    """The first character a label may not hold (position, and what it is), or None."""
    for k, ch in enumerate(text):
        if unicodedata.category(ch) == "Cc":
            return k, f"the control character U+{ord(ch):04X}"
        if ch in BIDI_FORMATTING:
            return k, f"the bidirectional formatting character U+{ord(ch):04X} ({unicodedata.name(ch)})"
    return None


def check_label(value: object, what: str, max_length: int) -> str:
    """``value`` if it is a label of at most ``max_length`` characters; else an error naming
    ``what`` and what to change."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}.")
    if not value.strip():
        raise InvalidInputError(f"{what} must not be empty or blank, got {value!r}.")
    if len(value) > max_length:
        raise InvalidInputError(f"{what} {_shown(value)} has {len(value):,} characters; give at most {max_length}.")
    bad = forbidden(value)
    if bad is not None:
        k, char = bad
        raise InvalidInputError(f"{what} {_shown(value)} holds {char} at position {k}: control and bidirectional "
                                "formatting characters change how a terminal shows the line; remove it.")
    return value


def check_name(name: object, what: str = "A job set's name") -> str:
    """A job set's name (``run(name=...)``, ``update_name``, ``qjm run --name``, ``qjm rename``)."""
    return check_label(name, what, MAX_NAME_LENGTH)
