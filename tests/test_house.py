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


#: What ``publish/`` may take from ``collector/``: the running collection's state only (the
#: admin endpoint lists the scheduler's jobs of each source). Reading files (RPW, the
#: remittance matrix, the bundled reference data) is ``corridors.reading``'s, which every stage
#: may use; a later stage that imports ``collector`` to read something has it in the wrong room.
PUBLISH_FROM_COLLECTOR = {"collector.schedule"}


def _imported_modules(path: Path) -> set[str]:
    """The dotted modules ``path`` imports, anywhere in it (a deferred import too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" if node.module == "collector"
                         else node.module for alias in node.names)
    return found


def test_publish_takes_only_the_collection_state_from_collector() -> None:
    """``publish/`` reads RPW files and the matrix through ``corridors.reading``, never
    through ``collector/`` (whose modules collect); ``metrics/`` imports no collector."""
    wrong = []
    for stage, allowed in (("publish", PUBLISH_FROM_COLLECTOR), ("metrics", set())):
        for path in sorted((ROOT / stage).rglob("*.py")):
            for module in sorted(_imported_modules(path)):
                if module.split(".")[0] == "collector" and module not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


def test_the_readers_of_reference_files_are_in_the_core() -> None:
    """The readers other stages use live in ``corridors.reading``: no module of
    ``collector/`` defines them again (a reader left behind would be used by mistake)."""
    readers = {"read_rpw", "bundled_rpw_path", "read_bilateral_matrix", "read_bilateral_flows",
               "read_bundled_flows", "flows_from_matrix"}
    defined = []
    for path in sorted((ROOT / "collector").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in readers:
                defined.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert defined == []


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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_graph() -> dict[str, set[str]]:
    """Each module of the house → the modules of the house it imports, anywhere in it (a
    function's import too: deferring an import hides a cycle, it does not break it).
    Importing ``a.b.c`` runs ``a`` and ``a.b`` first, so those are imported as well, except
    the importer's own packages, which are already running when it runs."""
    modules = {_module_name(p): p for stage in ORDER for p in sorted((ROOT / stage).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        explicit: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                explicit.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    anchor = parts[:len(parts) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    # ``from a import b``: b is a module of its own, or a name read from a.
                    sub = f"{base}.{alias.name}"
                    explicit.add(sub if sub in modules else base)
        edges: set[str] = set()
        for target in explicit:
            parts = target.split(".")
            edges.update(m for i in range(1, len(parts) + 1)
                         if (m := ".".join(parts[:i])) in modules
                         and (m == target or m not in own))
        edges.discard(name)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check below can fail: a → b → c → a is found, a tree is not."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_module_imports_itself_through_others() -> None:
    """No import cycle between the house's modules: each room can be read (and imported)
    after the ones it uses."""
    assert [" → ".join(cycle) for cycle in _cycles(_module_graph())] == []
