"""CPython stand-in for MicroPython's `micropython` module.

Lets the firmware's logic modules import under CPython (pytest, host tools)
exactly as they are written for the board.
"""


def const(value):  # noqa: D103 - mirrors micropython.const
    return value


def mem_peak() -> int:  # not meaningful on CPython
    return 0


interrupt_char = 3  # what kbd_intr() last set (the REPL's Ctrl-C), for tests under CPython


def kbd_intr(chr: int) -> None:  # noqa: D103 - mirrors micropython.kbd_intr
    global interrupt_char
    interrupt_char = chr
