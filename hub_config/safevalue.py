"""The one rule for values written into files a notebook reads: ``rucio.cfg`` and rucio-jupyterlab's config.

The settings model and the renderers both call :func:`value_problem` / :func:`path_problem`, so
what ``validate`` accepts is exactly what renders at every spawn: before, the model let through
values (a newline, a control character, a blank at the end) that the renderer then refused on
every spawn of the site.

A value is safe when it is

* **one line of visible text**: no control characters (they include ``\\n``, ``\\r``, tab, NUL and
  U+0085), line or paragraph separators, invisible format characters (bidi overrides, zero-width
  spaces: the value would not be what the admin sees) and lone surrogates (they cannot be
  written as UTF-8). A newline would let a value add keys or sections to ``rucio.cfg``;
* **without leading or trailing whitespace**: ``configparser`` strips it on reading, so the
  client would see another value than the one configured;
* **at most** :data:`MAX_VALUE_LENGTH` characters: a Secret holds every instance's files, twice
  for the default, and Kubernetes refuses Secrets over 1 MiB.

``%`` is allowed everywhere: the renderer writes it ``%%`` for the client's interpolating
parser. Paths (token, CA and RSE paths) are also absolute and free of ``~`` and ``$``: the client
expands both in ``ca_cert`` but uses ``auth_token_file_path`` literally, so either way the path
used would not be the one configured.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

from .modelbase import HTTP_PATTERN, HTTPS_PATTERN

__all__ = [
    "MAX_PATH_LENGTH",
    "MAX_VALUE_LENGTH",
    "FileHttpUrl",
    "FileHttpsUrl",
    "FileValue",
    "LiteralPath",
    "MountPath",
    "is_unsafe_char",
    "path_problem",
    "value_problem",
]

MAX_VALUE_LENGTH = 256
"""Longest value, in characters: with at most 16 instances a Secret stays below 1 MiB even when every
value is this long and made of characters that take 12 bytes in JSON (tested)."""
MAX_PATH_LENGTH = MAX_VALUE_LENGTH - 100
"""Longest mount path: the hub appends ``/token-<instance name>`` (at most 70 characters) to it."""

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def is_unsafe_char(ch: str) -> bool:
    """A control, format, surrogate or line/paragraph separator character: never written to a file."""
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES


def value_problem(value: str, *, limit: int = MAX_VALUE_LENGTH) -> str | None:
    """Why ``value`` cannot be written into ``rucio.cfg`` or the extension config, or None when it can.

    ``limit`` is for the one longer value the hub composes itself (the stand-in's explanation).
    """
    if not value:
        return "is empty"
    if len(value) > limit:
        return f"is longer than {limit} characters"
    bad = next((ch for ch in value if is_unsafe_char(ch)), None)
    if bad is not None:
        return (
            f"contains a line break, control or invisible character (U+{ord(bad):04X}): "
            "values written to rucio.cfg must be one line of visible text"
        )
    if value != value.strip():
        return "has leading or trailing whitespace (the Rucio client's configparser would drop it)"
    return None


def path_problem(value: str) -> str | None:
    """:func:`value_problem`, and an absolute path the Rucio client uses as written (no ``~``, no ``$``)."""
    problem = value_problem(value)
    if problem is not None:
        return problem
    if not value.startswith("/"):
        return "must be an absolute path"
    if "~" in value or "$" in value:
        return "must not contain ~ or $ (the Rucio client expands them in some paths and not in others)"
    return None


def _checked_value(value: str) -> str:
    problem = value_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _checked_path(value: str) -> str:
    problem = path_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


FileValue = Annotated[str, StringConstraints(min_length=1, max_length=MAX_VALUE_LENGTH), AfterValidator(_checked_value)]
"""A settings value that reaches ``rucio.cfg`` or the extension config (see the module's rule)."""

LiteralPath = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_VALUE_LENGTH), AfterValidator(_checked_path)
]
"""An absolute path that reaches ``rucio.cfg`` or the extension config, used exactly as written."""

MountPath = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATH_LENGTH), AfterValidator(_checked_path)]
"""A :data:`LiteralPath` the hub appends file names to (the Rucio mount)."""

FileHttpUrl = Annotated[
    str,
    StringConstraints(pattern=HTTP_PATTERN, max_length=MAX_VALUE_LENGTH),
    AfterValidator(_checked_value),
]
"""An http(s) URL that reaches ``rucio.cfg`` or the extension config."""

FileHttpsUrl = Annotated[
    str,
    StringConstraints(pattern=HTTPS_PATTERN, max_length=MAX_VALUE_LENGTH),
    AfterValidator(_checked_value),
]
"""An https URL that reaches ``rucio.cfg`` or the extension config."""
