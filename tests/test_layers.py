"""The package map as a rule: every import of every module (also those inside functions and
under TYPE_CHECKING) goes down a floor or stays in its package, and no modules import each other
in a circle. docs/architecture.md draws the same map."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "coinpredict"

# floor of each subpackage: an import may only go to a lower floor (or stay in its package)
FLOORS = {
    "base": 0,
    "local": 1,
    "store": 2,
    "exchange": 2,
    "forecast": 2,
    "replay": 2,
    "ingest": 3,
    "serving": 4,
    "health": 5,
    "publish": 6,
    "jobs": 7,
    "cli": 8,
    "__main__": 9,
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every coinpredict module ``path`` imports (``from a import b`` counts as ``a.b`` when
    ``a/b.py`` exists, else as ``a``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("coinpredict"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("coinpredict"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                as_module = PACKAGE.parent / (sub.replace(".", "/") + ".py")
                as_package = PACKAGE.parent / sub.replace(".", "/") / "__init__.py"
                found.add(sub if as_module.exists() or as_package.exists() else node.module)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in g.items():
        src = package_of(module)
        for target in targets:
            dst = package_of(target)
            if dst == src or not dst:
                continue
            if src not in FLOORS or dst not in FLOORS:
                bad.append(f"{module} -> {target}: a package missing from the floor map")
            elif FLOORS[dst] >= FLOORS[src]:
                bad.append(f"{module} (floor {FLOORS[src]}) -> {target} (floor {FLOORS[dst]})")
    return sorted(bad)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every module circle (one per strongly connected component larger than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in g.get(v, ()):
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_every_subpackage_has_a_floor():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(FLOORS), packages - set(FLOORS)
    flat = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert flat == [], f"modules outside a subsystem package: {flat}"


def test_no_import_runs_up_a_floor():
    assert upward_imports(graph()) == []


def test_no_import_circles():
    assert cycles(graph()) == []


@pytest.mark.parametrize(
    ("edges", "expect_up", "expect_cycle"),
    [
        ({"coinpredict.base.a": {"coinpredict.health.b"}, "coinpredict.health.b": set()}, 1, 0),
        (
            {
                "coinpredict.cli.a": {"coinpredict.cli.b"},
                "coinpredict.cli.b": {"coinpredict.cli.a"},
            },
            0,
            1,
        ),
        ({"coinpredict.jobs.a": {"coinpredict.base.b"}, "coinpredict.base.b": set()}, 0, 0),
    ],
)
def test_the_checks_catch_a_planted_upward_import_and_circle(edges, expect_up, expect_cycle):
    assert len(upward_imports(edges)) == expect_up
    assert len(cycles(edges)) == expect_cycle


def test_tests_share_helpers_not_each_other():
    """Shared test code lives in tests/helpers or conftest.py: no test module imports another."""
    tests = PACKAGE.parent / "tests"
    bad = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            bad += [
                f"{path.name} imports {n}" for n in names if n.split(".")[0].startswith("test_")
            ]
    assert bad == []


def test_the_architecture_map_lists_every_package_and_module():
    """docs/architecture.md's package table names exactly the packages and modules on disk."""
    import re

    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    listed = {}
    for row in re.findall(r"^\| `(\w+)/` \| ([^|]*) \|", doc, flags=re.M):
        listed[row[0]] = set(re.findall(r"`(\w+)/?`", row[1]))
    on_disk = {}
    for pkg in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").exists()):
        on_disk[pkg.name] = {m.stem for m in pkg.glob("*.py") if m.stem != "__init__"} | {
            d.name for d in pkg.iterdir() if d.is_dir() and not d.name.startswith("__")
        }
    assert set(listed) == set(on_disk)
    for pkg, modules in on_disk.items():
        documented = listed[pkg]
        if pkg == "cli":  # the table names the command modules as a group
            modules = {m for m in modules if not m.endswith(("_cmd", "_cmds"))} - {"replay"}
        assert modules <= documented, (pkg, modules - documented)
