"""Test support: a real mosquitto under control (mosquitto.py), a fault-injecting TCP proxy
(faultproxy.py) and the pytest fixtures built on them (fixtures.py, loaded by tests/conftest.py)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout the tests run in (the host package itself knows no checkout: it may be a wheel)."""
