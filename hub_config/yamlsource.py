"""YAML read with positions, so validation errors can say ``file:line``.

This module also turns a pydantic error into located problems (`problems_from_validation`), so both
models read from YAML — settings and profiles — report file:line the same way without importing
each other.

PyYAML's ``safe_load`` forgets where each value came from and silently keeps the last of two
duplicate keys. We compose the node graph instead, convert it to plain Python ourselves and
keep a map from key path to line; duplicate keys become problems rather than lost settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError, Problem, format_path
from .modelbase import PATTERN_MEANINGS, KeyedValueError
from .redact import redact

__all__ = ["Document", "parse_yaml", "problems_from_validation"]

KeyPath = tuple[str | int, ...]

MAX_BYTES = 1024 * 1024
"""A ConfigMap holds at most 1 MiB; nothing we read legitimately comes near it."""
MAX_NODES = 50_000
"""Values a document may expand to; aliases can otherwise blow a small file up exponentially."""
MAX_DEPTH = 64
"""Nesting levels. Checked on the parser's event stream, before the (recursive) composer runs."""
KNOWN_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq", "merge")
)
"""YAML's core tags. Any other (`!!python/object`, `!Ref`, `!!binary`) is refused, never dropped."""

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _TooLarge(Exception):
    pass


@dataclass(frozen=True)
class Document:
    """A parsed YAML document: its data and the line of every key path in it."""

    source: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        """A :class:`Problem` located at ``path``."""
        return Problem(self.source, self.line_of(path), format_path(path), message)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """SafeLoader (libyaml's, when the image has it: the stock z2jh hub image does) whose resolver we
    use only to compose nodes; values are built by :func:`_convert`, never by PyYAML constructors."""


class _ScalarLoader(yaml.SafeLoader):
    """The pure-Python SafeLoader, for its scalar constructors only."""


def _prescan(text: str, source: str) -> None:
    """Refuse nesting beyond MAX_DEPTH or more than MAX_NODES events, iteratively (no recursion),
    before the composer would recurse into them."""
    depth = 0
    for events, event in enumerate(yaml.parse(text, Loader=_Loader), start=1):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else None
                raise ConfigError([Problem(source, line, "", f"nested deeper than {MAX_DEPTH} levels")])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if events > MAX_NODES:
            line = event.start_mark.line + 1 if event.start_mark else None
            raise ConfigError([Problem(source, line, "", f"more than {MAX_NODES} values")])


def parse_yaml(text: str | bytes, source: str) -> Document:
    """Parse one YAML document; raise :class:`ConfigError` for syntax errors and duplicate keys."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise ConfigError([Problem(source, None, "", f"{size} bytes: larger than the {MAX_BYTES // 1024} KiB limit")])
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError([Problem(source, None, "", f"not UTF-8 text ({err.reason})")]) from None
    try:
        _prescan(text, source)
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        msg = " ".join(s for s in (err.context, err.problem) if s) or "invalid YAML"
        raise ConfigError([Problem(source, line, "", f"YAML syntax error: {msg}")]) from None
    except yaml.YAMLError as err:  # reader errors (control characters) carry no mark type
        raise ConfigError([Problem(source, None, "", f"YAML error: {redact(err)}")]) from None
    except RecursionError:  # not reachable after _prescan; kept so no input can raise a traceback
        raise ConfigError([Problem(source, None, "", "nested too deeply")]) from None
    if len(nodes) > 1:
        line = nodes[1].start_mark.line + 1
        raise ConfigError([Problem(source, line, "", "expected one YAML document, found several")])
    lines: dict[KeyPath, int] = {}
    problems: list[Problem] = []
    budget = [MAX_NODES]
    try:
        data = _convert(nodes[0], (), lines, problems, source, budget) if nodes else None
    except _TooLarge:
        raise ConfigError(
            [
                Problem(
                    source,
                    None,
                    "",
                    f"document too large or too deeply nested (aliases expand to over {MAX_NODES} values)",
                )
            ]
        ) from None
    if problems:
        raise ConfigError(problems)
    return Document(source=source, data=data, lines=lines)


def _convert(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    problems: list[Problem],
    source: str,
    budget: list[int],
) -> Any:
    budget[0] -= 1
    if budget[0] < 0 or len(path) > MAX_DEPTH:
        raise _TooLarge
    lines.setdefault(path, node.start_mark.line + 1)
    if node.tag not in KNOWN_TAGS and not (isinstance(node, yaml.ScalarNode) and node.tag == "!"):
        problems.append(
            Problem(
                source, node.start_mark.line + 1, format_path(path), f"unknown YAML tag {redact(node.tag, limit=60)}"
            )
        )
        return None
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                problems.append(
                    Problem(
                        source,
                        key_node.start_mark.line + 1,
                        format_path(path),
                        "merge keys (<<) are not supported",
                    )
                )
                continue
            key = _scalar(key_node, problems, source, path)
            if not isinstance(key, str | int | float | bool) and key is not None:
                problems.append(
                    Problem(
                        source,
                        key_node.start_mark.line + 1,
                        format_path(path),
                        "mapping keys must be plain scalars",
                    )
                )
                continue
            str_key = str(key) if not isinstance(key, str) else key
            child = (*path, str_key)
            if str_key in out:
                problems.append(
                    Problem(
                        source,
                        key_node.start_mark.line + 1,
                        format_path(child),
                        f"duplicate key (first set on line {lines.get(child, '?')})",
                    )
                )
                continue
            lines[child] = key_node.start_mark.line + 1
            out[str_key] = _convert(value_node, child, lines, problems, source, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), lines, problems, source, budget) for i, item in enumerate(node.value)]
    return _scalar(node, problems, source, path)


def _scalar(node: yaml.Node, problems: list[Problem], source: str, path: KeyPath) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        problems.append(Problem(source, node.start_mark.line + 1, format_path(path), "expected a scalar"))
        return None
    try:
        return _construct_scalar_value(node)
    except (yaml.YAMLError, ValueError, OverflowError) as err:
        problems.append(Problem(source, node.start_mark.line + 1, format_path(path), f"bad value: {err}"))
        return None


def _construct_scalar_value(node: yaml.ScalarNode) -> Any:
    """Construct one scalar with SafeLoader's resolvers (int, float, bool, null, timestamps as text)."""
    loader = _ScalarLoader("")
    try:
        if node.tag == "tag:yaml.org,2002:timestamp":
            return str(node.value)  # dates stay text: settings never want datetime objects
        if node.tag in loader.yaml_constructors and node.tag.startswith("tag:yaml.org,2002:"):
            return loader.yaml_constructors[node.tag](loader, node)
        return str(node.value)
    finally:
        loader.dispose()


def problems_from_validation(err: ValidationError, doc: Document, prefix: tuple[str | int, ...] = ()) -> list[Problem]:
    """One :class:`Problem` per pydantic error, located in ``doc`` with the error's key path."""
    problems: list[Problem] = []
    for e in err.errors(include_url=False):
        # pydantic marks a dict key's own error with a trailing "[key]": the key's line is the place.
        loc = (*prefix, *(p for p in e["loc"] if isinstance(p, str | int) and p != "[key]"))
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, KeyedValueError):
            loc = (*loc, *cause.key)
        problems.append(doc.problem(loc, _message(e)))
    return problems


def _message(e: Any) -> str:
    """An admin-readable message for one pydantic error (pydantic's own ones name internals)."""
    kind = e.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see `python -m hub_config schema`)"
    if kind == "missing":
        return "required key is missing"
    if kind == "string_pattern_mismatch":
        pattern = str((e.get("ctx") or {}).get("pattern", ""))
        meaning = PATTERN_MEANINGS.get(pattern, f"must match {pattern}")
        return f"{redact(repr(e.get('input')), limit=80)} {meaning}"
    msg = str(e.get("msg", "invalid value"))
    return redact(msg.removeprefix("Value error, "), limit=300)
