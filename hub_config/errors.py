"""Errors an admin can act on: each problem names the file, line and key path.

Admins edit YAML by hand; a traceback tells them nothing. Every loader in this package turns
what went wrong into :class:`Problem` records and raises one :class:`ConfigError` holding all
of them, so a single ``validate`` run lists every mistake, not just the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ConfigError", "Problem", "format_path"]


def format_path(path: Sequence[str | int]) -> str:
    """``("storage", "eos", 0, "name")`` → ``storage.eos[0].name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a configuration source."""

    source: str
    """File path (or a label such as ``<values datalake>``) the problem is in."""
    line: int | None
    """1-based line, when the source is a file and the position is known."""
    key: str
    """Dotted key path inside the document (empty for whole-document problems)."""
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(ValueError):
    """Settings or profiles are invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(set(problems)))
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid configuration")

    def __reduce__(self) -> tuple[type[ConfigError], tuple[tuple[Problem, ...]]]:
        return (type(self), (self.problems,))
