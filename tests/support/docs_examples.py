"""The values files and profiles the docs tell operators and admins to use, extracted for the tests.

Every fenced ```yaml block, and every `cat > NAME.yaml <<'EOF'` heredoc in a console block, of the
README and docs/operator.md is an example someone will paste. Each is classified by its content: a
chart values file (top-level keys of our values) or a profile (it has a `slug`). A YAML block that is
neither fails the tests, so a new example cannot slip past them untested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from tests.support.helm import REPO

__all__ = ["DOCS", "VALUES_KEYS", "Example", "examples"]

DOCS = (REPO / "README.md", REPO / "docs" / "operator.md")
VALUES_KEYS = frozenset({"datalake", "jupyterhub", "secrets", "profileFiles", "dask-gateway"})
"""Top-level keys of chart/values.yaml: a block made of these is a values file."""

_FENCE = re.compile(r"^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
_HEREDOC = re.compile(
    r"cat > (?P<name>[\w.-]+\.ya?ml) <<'?(?P<tag>\w+)'?\n(?P<body>.*?)^(?P=tag)$", re.MULTILINE | re.DOTALL
)


@dataclass(frozen=True)
class Example:
    """One pasteable example: where it is, what it is, its text."""

    source: str
    """`docs/operator.md:27`: the line its YAML starts on."""
    kind: Literal["values", "profile"]
    text: str

    @property
    def id(self) -> str:
        return self.source.replace("/", "-")

    def data(self) -> dict[str, Any]:
        loaded = yaml.safe_load(self.text)
        assert isinstance(loaded, dict)
        return loaded


def _classify(source: str, text: str) -> Example:
    data = yaml.safe_load(text)
    if isinstance(data, dict) and "slug" in data:
        return Example(source, "profile", text)
    if isinstance(data, dict) and data and set(data) <= VALUES_KEYS:
        return Example(source, "values", text)
    raise ValueError(
        f"{source}: a YAML example that is neither a chart values file (top-level keys among "
        f"{sorted(VALUES_KEYS)}) nor a profile (a `slug`): make it one, so the tests can check it"
    )


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def examples(docs: tuple[Path, ...] = DOCS) -> list[Example]:
    """Every YAML example of ``docs``, in document order."""
    out: list[Example] = []
    for doc in docs:
        text = doc.read_text()
        rel = doc.relative_to(REPO).as_posix()
        for fence in _FENCE.finditer(text):
            body_at = fence.start("body")
            if fence.group("lang") == "yaml":
                out.append(_classify(f"{rel}:{_line(text, body_at)}", fence.group("body")))
            elif fence.group("lang") in ("console", "bash", "sh", "shell"):
                for heredoc in _HEREDOC.finditer(fence.group("body")):
                    line = _line(text, body_at + heredoc.start("body"))
                    out.append(_classify(f"{rel}:{line}", heredoc.group("body")))
    return out
