"""Test support: a real mosquitto under control (mosquitto.py), a fault-injecting TCP proxy
(faultproxy.py) and the pytest fixtures built on them (fixtures.py, loaded by tests/conftest.py)."""
