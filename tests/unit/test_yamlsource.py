"""YAML parsing keeps positions so admins get file:line, and never loses a duplicated key silently."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub_config.errors import ConfigError
from hub_config.yamlsource import parse_yaml


def test_lines_are_recorded_for_nested_keys() -> None:
    """An error deep in a file points at the line the admin has to edit."""
    doc = parse_yaml("a: 1\nb:\n  c:\n    - x\n    - y\n", "f.yaml")
    assert doc.line_of(("b", "c", 1)) == 5
    assert doc.line_of(("b", "c")) == 3
    assert doc.line_of(("b", "missing", "deeper")) == 2


def test_duplicate_key_is_an_error_naming_both_lines() -> None:
    """PyYAML would keep the second value silently; we refuse and say where the first was."""
    with pytest.raises(ConfigError) as err:
        parse_yaml("slug: a\nimage: x\nslug: b\n", "p.yaml")
    assert str(err.value) == "p.yaml:3: slug: duplicate key (first set on line 1)"


def test_syntax_error_has_line() -> None:
    """A YAML syntax error names the line it was found on."""
    with pytest.raises(ConfigError) as err:
        parse_yaml("a: 1\nb: [1, 2\nc: 3\n", "p.yaml")
    assert str(err.value).startswith("p.yaml:3: YAML syntax error")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a: &x [*x]", "too large or too deeply nested"),
        (
            "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [" + ",".join(["*a"] * 100) + "]\nc: [" + ",".join(["*b"] * 100) + "]",
            "too large",
        ),
        ("---\na: 1\n---\nb: 2\n", "found several"),
        ("<<: {a: 1}\n", "merge keys"),
        ("? [a]\n: 1\n", "expected a scalar"),
    ],
)
def test_hostile_documents_are_refused_not_expanded(text: str, needle: str) -> None:
    """Alias bombs, recursive anchors and odd constructs end in a clear error, not a hang or crash."""
    with pytest.raises(ConfigError) as err:
        parse_yaml(text, "bad.yaml")
    assert needle in str(err.value)


def test_non_utf8_bytes_are_refused() -> None:
    """A file saved in another encoding is reported as such."""
    with pytest.raises(ConfigError, match="not UTF-8"):
        parse_yaml(b"name: \xff\xfe", "latin.yaml")


def test_dates_stay_text() -> None:
    """An image tag like 2026-11-01 must not turn into a date object."""
    assert parse_yaml("tag: 2026-11-01\n", "t").data == {"tag": "2026-11-01"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_document_or_our_error(raw: bytes) -> None:
    """Whatever an admin (or a disk error) puts in a file, the loader answers with data or ConfigError."""
    try:
        parse_yaml(raw, "fuzz.yaml")
    except ConfigError as err:
        assert err.problems


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:- \n[]{}&*!#'\"|>,?%@`\t0")), max_size=120))
def test_yaml_like_text_gives_a_document_or_our_error(text: str) -> None:
    """Text made of YAML's own punctuation never escapes as a raw exception."""
    try:
        parse_yaml(text, "fuzz.yaml")
    except ConfigError as err:
        assert all(p.source == "fuzz.yaml" for p in err.problems)
