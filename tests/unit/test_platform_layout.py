"""The test platform stays as easy to read as the product (issue 16): short functions, cheap imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAX_FUNCTION_LINES = 80
CHECKED = ("scripts", "benchmarks", "tests/support")


def _long_functions(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_platform_function_is_longer_than_80_lines() -> None:
    """A step that needs more than a screen is several steps: name them."""
    long = [f for d in CHECKED for f in _long_functions(REPO / d)]
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_reading_node_agent_records_does_not_import_the_agent_client() -> None:
    """Tests import ``localplatform.nodeagent`` for ``agent_pods``; aiohttp (the agent's API client)
    is for the agent process only, so a test helper never pays for it."""
    code = "import sys, localplatform.nodeagent; print('aiohttp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO / "scripts")},
    )
    assert out.stdout.strip() == "False"
