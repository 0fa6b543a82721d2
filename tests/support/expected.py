"""Compare results with stored expected objects (JSON under tests/data/expected).

Set ``UPDATE_EXPECTED=1`` to rewrite them after an intended change, then review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data"
EXPECTED = DATA / "expected"


def assert_matches_stored(name: str, actual: Any) -> None:
    """Assert ``actual`` equals ``tests/data/expected/<name>.json`` (or write it when updating)."""
    path = EXPECTED / f"{name}.json"
    text = json.dumps(actual, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("UPDATE_EXPECTED") == "1" or not path.exists():
        if os.environ.get("CI") and not path.exists():
            raise AssertionError(f"{path} is missing; generate it with UPDATE_EXPECTED=1 and commit it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert json.loads(path.read_text()) == json.loads(text), f"{name} differs from {path} (UPDATE_EXPECTED=1)"


def fake_jwt(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT-shaped string built at run time (never a real token; none is kept in the repo)."""
    import base64

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join((part(json.dumps(header).encode()), part(json.dumps(payload).encode()), part(signature)))
