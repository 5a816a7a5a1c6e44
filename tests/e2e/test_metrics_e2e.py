"""The host service's metrics endpoint, scraped during a whole-chain run (real firmware, mosquitto,
the service): it shows the locker online and the events the service ingested, as its database has them."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

import pytest
from e2e_chain import Chain
from prometheus_client.parser import text_string_to_metric_families

from lockertools.sim import default_micropython

pytestmark = [
    pytest.mark.scenario,
    pytest.mark.skipif(not default_micropython().exists(), reason="micropython (unix port) is not installed"),
]


def _scrape(c: Chain) -> dict[str, float]:
    service = c.service.service
    assert service is not None and service.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def test_the_metrics_show_what_the_chain_ingested(chain: Callable[..., Chain]) -> None:
    c = chain()
    c.put_parcel("2")
    c.boot()
    c.wait_synced()
    c.wait(lambda: _scrape(c).get("lockerhost_lockers_online") == 1, "the locker online in the metrics")
    code = c.issue("2")
    c.wait_synced()
    c.pickup(code.code, "2")
    c.wait(lambda: any(e["k"] == "pickup" for e in c.db_events()), "the pickup in the host's database")
    c.wait_all_events()
    recorded = len(c.db_events())
    c.wait(lambda: _scrape(c).get("lockerhost_events_ingested_total") == recorded, "the metrics to show them")
    m = _scrape(c)
    assert recorded >= 2  # at least the door's opening and the pickup
    assert m["lockerhost_broker_connected"] == 1 and m["lockerhost_up"] == 1
    assert m["lockerhost_lockers"] == 1
    assert m["lockerhost_sync_commands_total"] >= 1
