"""The house rule: data flows one way, so no stage imports a later one."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["corridors", "collector", "metrics", "publish", "sendcost"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_stage_imports_a_later_one() -> None:
    violations = []
    for i, stage in enumerate(ORDER):
        later = set(ORDER[i + 1:])
        for path in sorted((ROOT / stage).rglob("*.py")):
            bad = _imports(path) & later
            if bad:
                violations.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert violations == []


def test_metrics_do_no_io() -> None:
    forbidden = {"asyncio", "asyncpg", "aiohttp", "os", "pathlib", "time", "socket", "urllib",
                 "io", "pandas", "importlib", "collector", "country_converter"}
    for path in sorted((ROOT / "metrics").rglob("*.py")):
        assert not (_imports(path) & forbidden), f"{path.name} does I/O or reads the clock"
