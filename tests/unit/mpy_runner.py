# Runs unit-test modules under the real MicroPython interpreter: every function named test_*.
# Usage: micropython -X heapsize=128K mpy_runner.py test_keypad test_entry ...
import sys


def run(modules):
    passed = failed = 0
    for name in modules:
        mod = __import__(name)
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            fn = getattr(mod, attr)
            if not callable(fn):
                continue
            try:
                fn()
                passed += 1
                print("PASS", name, attr)
            except Exception as exc:  # report every failure, keep going
                failed += 1
                print("FAIL", name, attr)
                sys.print_exception(exc)
    print("%d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    sys.exit(1 if run(sys.argv[1:]) else 0)
