"""Fixtures for the end-to-end tests (tests/e2e): `chain()` builds the whole chain (e2e_chain.Chain)
on the `broker` fixture and stops every piece at teardown, whatever happened."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_chain import Chain, chains

from tests.support.fixtures import Broker


@pytest.fixture
def chain(broker: Broker, tmp_path: Path) -> Iterator[Callable[..., Chain]]:
    """`chain(**options)` -> a started Chain (see Chain.__init__ for the options); closed at teardown."""
    yield from chains(broker, tmp_path)


@pytest.fixture
def tls_chain(tls_broker: Broker, tmp_path: Path) -> Iterator[Callable[..., Chain]]:
    """As `chain`, on a TLS-only broker: the locker, the service and the tap all verify its certificate."""
    yield from chains(tls_broker, tmp_path)


@pytest.fixture(autouse=True)
def _on_both_databases(database: str) -> str:
    """Every end-to-end test runs with the service on SQLite and on PostgreSQL (tests/support/fixtures.py)."""
    return database
