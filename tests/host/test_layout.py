"""The host package's layout (docs/design.md, "Layout"): no import cycle between lockertools modules, and
the libraries never import the command line (lockertools.cli), which imports them.

The graph is read from the source with `ast`, not by importing: every `import` / `from ... import` of
a lockertools module counts, at any depth (lazy imports in functions too: a cycle through one is still
a cycle, and a library that imports lockertools.cli lazily still depends on it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "host_tools" / "lockertools"
CLI = "lockertools.cli"
# click decorators that define a command-line interface: they belong in lockertools.cli
CLICK_DEFINITIONS = {"command", "group", "option", "argument", "pass_context", "pass_obj", "version_option"}

Graph = dict[str, set[str]]


def module_names(package_dir: Path) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name, for its __init__)."""
    root = package_dir.name
    names: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [root, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name a (possibly relative) `from` import refers to."""
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def import_graph(package_dir: Path) -> Graph:
    """module -> the package's modules it imports. `from a.b import c` imports a.b.c where that is a
    module, else a.b (c is a name in it). Parent packages Python initialises on the way are not edges:
    every import of a.b.c would then also be one of a and a.b, and a package re-exporting its own
    submodules (lockertools.sim) would be a cycle by construction."""
    names = module_names(package_dir)
    root = package_dir.name
    graph: Graph = {}
    for module, path in names.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(module, is_package, node.level, node.module)
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    targets.add(submodule if submodule in names else source)
        graph[module] = {t for t in targets if t in names and t != module and t.split(".")[0] == root}
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) for each strongly connected component that has one (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: Graph, component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in strongly connected component {sorted(component)}")


def _is_cli(module: str, cli: str) -> bool:
    return module == cli or module.startswith(cli + ".")


def library_imports_of_cli(graph: Graph, cli: str = CLI) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if not _is_cli(module, cli)
        for target in targets
        if _is_cli(target, cli)
    )


def click_definitions(package_dir: Path, cli: str = CLI) -> list[str]:
    """Decorators defining commands, options or groups (`@click.command`, `@group.command`, ...) outside
    the cli package."""
    found = []
    for module, path in module_names(package_dir).items():
        if _is_cli(module, cli):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for decorator in node.decorator_list:
                call = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(call, ast.Attribute) and call.attr in CLICK_DEFINITIONS:
                    found.append(f"{module}:{node.lineno} {node.name} (@{ast.unparse(call)})")
                    break
    return found


def test_no_import_cycle_in_lockertools() -> None:
    found = cycles(import_graph(PACKAGE_DIR))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_library_module_imports_the_command_line() -> None:
    found = library_imports_of_cli(import_graph(PACKAGE_DIR))
    assert not found, "only lockertools.cli may import lockertools.cli:\n" + "\n".join(found)


def test_click_commands_are_defined_in_the_cli_package_only() -> None:
    found = click_definitions(PACKAGE_DIR)
    assert not found, "command-line definitions outside lockertools/cli/:\n" + "\n".join(found)


def test_the_console_script_is_the_cli_package_main() -> None:
    from lockertools.cli import main

    text = (PACKAGE_DIR.parents[1] / "pyproject.toml").read_text()
    assert 'lockerctl = "lockertools.cli:main"' in text
    assert main.name == "main" and {"board", "broker", "sim", "service", "provision", "update"} <= set(main.commands)


# --- the checks themselves, on a made-up package with each fault ------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in {"__init__.py": "", "cli/__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_cycle_through_a_lazy_import_is_found_and_named(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "a.py": "from pkg.b import thing\n",
            "b.py": "def f():\n    from pkg import c\n",
            "c.py": "import pkg.a\n",
            "d.py": "from pkg.a import x\n",  # into the cycle, not part of it
        },
    )
    assert cycles(import_graph(root)) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_relative_imports_are_edges_and_a_package_reexporting_its_submodule_is_no_cycle(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "sim/__init__.py": "from .board import Board\n",
            "sim/board.py": "X = 1\n",
            "sim/net.py": "from pkg.sim.board import X\nfrom . import board\n",
            "lib.py": "from .sim import net\n",
        },
    )
    graph = import_graph(root)
    assert graph["pkg.sim"] == {"pkg.sim.board"}
    assert graph["pkg.sim.net"] == {"pkg.sim.board"}
    assert graph["pkg.lib"] == {"pkg.sim.net"}
    assert cycles(graph) == []
    (root / "sim" / "board.py").write_text("def f():\n    from .net import y\n")
    assert cycles(import_graph(root)) == [["pkg.sim.board", "pkg.sim.net", "pkg.sim.board"]]


def test_a_library_importing_the_cli_is_found_at_any_depth(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "cli/tool.py": "from pkg.lib import run\nfrom pkg.cli import helpers\n",
            "cli/helpers.py": "",
            "lib.py": "def run():\n    if True:\n        from pkg.cli.helpers import echo\n",
            "other.py": "import pkg.cli\n",
        },
    )
    assert library_imports_of_cli(import_graph(root), "pkg.cli") == [
        "pkg.lib imports pkg.cli.helpers",
        "pkg.other imports pkg.cli",
    ]


@pytest.mark.parametrize(
    "source",
    [
        "import click\n@click.command()\ndef cmd(): ...\n",
        "import click\n@click.group\ndef grp(): ...\n",
        "from x import grp\n@grp.command('sub')\ndef sub(): ...\n",
        "import click\nopt = 1\n@click.option('--n')\ndef f(n): ...\n",
    ],
)
def test_a_click_definition_outside_the_cli_is_found(tmp_path: Path, source: str) -> None:
    root = _package(tmp_path, {"lib.py": source, "cli/ok.py": source})
    found = click_definitions(root, "pkg.cli")
    assert len(found) == 1 and found[0].startswith("pkg.lib:")


def test_no_two_test_modules_share_a_file_name() -> None:
    """pytest imports test modules by their file name (rootdir-relative packages aside): a second
    tests/*/test_x.py stops the first one's directory from being collected at all in a full run."""
    seen: dict[str, list[str]] = {}
    root = Path(__file__).resolve().parents[2]
    for path in sorted((root / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(root)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
