# The firmware's log: a line on the console (USB serial; the simulator's stdout), "log|" first so
# tools tell it from events and display lines. Its own module so that the boot's and the trial's
# modules need not import locker.runtime back.


def log(*parts):
    print("log|", *parts)
