"""`lockerctl sim web`: the simulated locker wall in a browser, running the real firmware.

server.py runs the broker, the host service and the lockers (lockertools.sim.net's start-up) and an aiohttp
server on 127.0.0.1 that serves static/ (plain HTML, JS and CSS: no build step) and a WebSocket.
"""

from lockertools.sim.web.server import WebSim, run_web

__all__ = ["WebSim", "run_web"]
