# Runs before main.py on every reset. Kept tiny on purpose: hal.board switches the solenoids off
# as the first thing main.py does, and the safe-mode decision lives in locker.safemode.
import gc

gc.collect()
