"""The house rule: data flows one way, so no stage imports a later one."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["corridors", "collector", "metrics", "publish", "sendcost"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
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


def test_every_file_a_package_reads_is_packaged() -> None:
    """A non-editable install carries only what package-data names: every non-Python file
    inside a package (migrations, data, templates) must match one of its globs."""
    import fnmatch
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]
    missing = []
    for package in ORDER:
        for path in sorted((ROOT / package).rglob("*")):
            rest = path.relative_to(ROOT / package).as_posix()
            if (path.is_dir() or "__pycache__" in path.parts
                    or path.suffix in (".py", ".pyc", ".typed")):
                continue
            if not any(fnmatch.fnmatch(rest, g) for g in globs.get(package, [])):
                missing.append(f"{package}/{rest}")
    assert missing == [], f"not in [tool.setuptools.package-data]: {missing}"
