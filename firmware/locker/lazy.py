# Rarely used modules: imported for their work and dropped after it, so the running locker does not
# hold their bytecode and globals (docs/design.md, "Modules on the heap"). A module stays on the heap
# while anything names it: sys.modules AND the attribute `import locker.x` set on the package, so
# drop() takes both. A bare name is locker's ("appinit": locker.appinit); a dotted one is taken as
# it is ("hal.boardinit").
import sys


def _full(name):
    return name if "." in name else "locker." + name


def load(name):
    """The module, imported now if it is not loaded. A collection first: a module's bytecode wants
    whole blocks, and a lazy import is rare enough to afford one."""
    full = _full(name)
    mod = sys.modules.get(full)
    if mod is None:
        if sys.implementation.name == "micropython":  # CPython's full collection defragments nothing
            import gc  # and costs tens of ms under pytest: the property tests import thousands of times

            gc.collect()
        mod = __import__(full, None, None, ("_",))
    return mod


def drop(*names):
    """Each module out of sys.modules and off its package: its heap goes back."""
    for name in names:
        full = _full(name)
        sys.modules.pop(full, None)
        cut = full.rfind(".")
        package = sys.modules.get(full[:cut])
        leaf = full[cut + 1 :]
        if package is not None and hasattr(package, leaf):  # (delattr of a missing one: KeyError on MicroPython)
            delattr(package, leaf)
