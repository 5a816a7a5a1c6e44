"""The firmware's structure rules (docs/design.md, "Conventions for firmware modules"), read from its
source with `ast`: no module reads another module's private names, and the Runtime's and the
Locker's fields are all declared in their __init__, whoever fills them in later."""

from __future__ import annotations

import ast
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"

# Private names of code outside the firmware, read on purpose.
FOREIGN_ALLOWED = {
    # MicroPython's asyncio keeps its I/O queue private; hal.net's open_connection waits on it as
    # asyncio.open_connection itself does.
    ("hal/net.py", "core._io_queue"),
}

# How the firmware names a Runtime and a Locker outside their own class (the names its modules use).
RUNTIME_REFS = {"rt", "self.rt"}
LOCKER_REFS = {"lk", "self.lk", "locker", "self.locker", "rt.locker", "self.rt.locker"}


def _modules() -> list[tuple[str, ast.Module]]:
    return [(p.relative_to(FIRMWARE).as_posix(), ast.parse(p.read_text())) for p in sorted(FIRMWARE.rglob("*.py"))]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _own_names(tree: ast.Module) -> set[str]:
    """Every name the module itself defines: its globals, its classes' methods and attributes."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            own.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            own.add(node.attr)
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for item in cls.body:  # class attributes and annotations
            for target in getattr(item, "targets", [getattr(item, "target", None)]):
                if isinstance(target, ast.Name):
                    own.add(target.id)
    return own


def foreign_private_reads(path: str, tree: ast.Module) -> list[str]:
    own = _own_names(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
            text = ast.unparse(node)
            if (path, text) not in FOREIGN_ALLOWED:
                found.append((node.lineno, text))
        elif isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names if _private(a.name)]
            found += [(node.lineno, "from %s import %s" % (node.module, name)) for name in names]
    return ["%s:%d %s" % (path, line, text) for line, text in sorted(found)]


def test_no_firmware_module_reads_another_modules_private_names() -> None:
    found = [hit for path, tree in _modules() for hit in foreign_private_reads(path, tree)]
    assert not found, "private names read across modules (give them a public name or a method):\n" + "\n".join(found)


def test_the_rule_sees_a_private_read_across_modules() -> None:
    tree = ast.parse("def f(cs, lk):\n    n = cs._buf\n    from locker.codes import _cmp_tag\n    return lk._screen\n")
    assert foreign_private_reads("x.py", tree) == [
        "x.py:2 cs._buf",
        "x.py:3 from locker.codes import _cmp_tag",
        "x.py:4 lk._screen",
    ]
    own = ast.parse("class A:\n    def __init__(self):\n        self._n = 0\n\n\ndef g(a):\n    return a._n\n")
    assert foreign_private_reads("x.py", own) == []  # a module's own class


def _stores_through(node: ast.AST, refs: set[str]) -> list[ast.Attribute]:
    """The attribute assignments inside `node` whose object is written as one of `refs`."""
    return [
        t
        for t in ast.walk(node)
        if isinstance(t, ast.Attribute) and isinstance(t.ctx, ast.Store) and ast.unparse(t.value) in refs
    ]


def _declared(tree: ast.Module, class_name: str) -> set[str]:
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    return {t.attr for t in _stores_through(init, {"self"})}


def field_assignments(path: str, tree: ast.Module, refs: set[str], class_name: str) -> list[tuple[str, str]]:
    """(where, field) for each field assigned through one of `refs`, or through `self` in the class's
    own methods other than __init__."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and fn.name != "__init__":
                    out += [("%s:%d" % (path, t.lineno), t.attr) for t in _stores_through(fn, {"self"})]
    out += [("%s:%d" % (path, t.lineno), t.attr) for t in _stores_through(tree, refs)]
    return sorted(out, key=lambda a: int(a[0].split(":")[1]))


def test_runtime_and_locker_declare_every_field_in_their_init() -> None:
    modules = dict(_modules())
    for class_path, class_name, refs in (
        ("locker/runtime.py", "Runtime", RUNTIME_REFS),
        ("locker/app.py", "Locker", LOCKER_REFS),
    ):
        declared = _declared(modules[class_path], class_name)
        assigned = [a for path, tree in modules.items() for a in field_assignments(path, tree, refs, class_name)]
        # The rule reads real assignments: startup fills the Runtime in, appinit the Locker.
        assert len({where.split(":")[0] for where, _ in assigned}) > 1, (class_name, assigned)
        undeclared = ["%s %s.%s" % (where, class_name, f) for where, f in assigned if f not in declared]
        assert not undeclared, "fields not declared in %s.__init__:\n%s" % (class_name, "\n".join(undeclared))


def test_the_rule_sees_a_field_added_from_outside() -> None:
    cls = ast.parse(
        "class Locker:\n    def __init__(self):\n        self.a = 1\n\n    def f(self):\n        self.b = 2"
    )
    other = ast.parse("def init(lk):\n    lk.a = 3\n    lk.c = 4\n")
    assert _declared(cls, "Locker") == {"a"}
    assert field_assignments("app.py", cls, LOCKER_REFS, "Locker") == [("app.py:6", "b")]
    found = field_assignments("appinit.py", other, LOCKER_REFS, "Locker")
    assert found == [("appinit.py:2", "a"), ("appinit.py:3", "c")]
