# Rarely used modules: imported for their work and dropped after it, so the running locker does not
# hold their bytecode and globals (docs/design.md, "Modules on the heap"). A module stays on the heap
# while anything names it: sys.modules AND the attribute `import locker.x` set on the package, so
# drop() takes both.
import sys


def load(name):
    """locker.<name>, imported now if it is not loaded. A collection first: a module's bytecode wants
    whole blocks, and a lazy import is rare enough to afford one."""
    mod = sys.modules.get("locker." + name)
    if mod is None:
        import gc

        gc.collect()
        mod = __import__("locker." + name, None, None, ("_",))
    return mod


def drop(*names):
    """locker.<name> for each name out of sys.modules and off the package: its heap goes back."""
    import locker

    for name in names:
        sys.modules.pop("locker." + name, None)
        if hasattr(locker, name):  # (delattr of a missing one: KeyError on MicroPython)
            delattr(locker, name)

