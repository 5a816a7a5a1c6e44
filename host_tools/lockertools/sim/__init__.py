"""The simulator: the real firmware under MicroPython's unix port on a simulated board (docs/simulator.md).

- `board`: `VirtualBoard`, one simulated locker driven over its control socket, and the heaps.
- `net`: the online simulator: broker, host service and lockers on loopback (`lockerctl sim net`).
- `embedded_broker`: amqtt with the fleet's users and ACLs, when mosquitto is missing.
- `scenario`: YAML scenario files run against a `VirtualBoard`.
- `web`: the browser simulator (`lockerctl sim web`, `make sim`).

The command line is lockertools.cli.sim. What tests and benchmarks use of `board` is re-exported here.
"""

from lockertools.sim.board import (
    CONSOLE_SYNC_HEAP,
    DEFAULT_HEAP,
    NET_HEAP,
    SIM_SHIM_HEAP,
    TLS_HEAP,
    SimError,
    SimTimeout,
    VirtualBoard,
    board_latency_ms,
    compiled_firmware,
    compiled_sim_board,
    default_micropython,
    heap_bytes,
)

__all__ = [
    "CONSOLE_SYNC_HEAP",
    "DEFAULT_HEAP",
    "NET_HEAP",
    "SIM_SHIM_HEAP",
    "TLS_HEAP",
    "SimError",
    "SimTimeout",
    "VirtualBoard",
    "board_latency_ms",
    "compiled_firmware",
    "compiled_sim_board",
    "default_micropython",
    "heap_bytes",
]
