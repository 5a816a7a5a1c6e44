"""Fixtures for the end-to-end tests (tests/e2e): `chain()` builds the whole chain (e2e_chain.Chain)
on the `broker` fixture and stops every piece at teardown, whatever happened."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_chain import Chain

from tests.support.fixtures import Broker


def _chains(broker: Broker, tmp_path: Path) -> Iterator[Callable[..., Chain]]:
    made: list[Chain] = []

    def make(**kw: Any) -> Chain:
        c = Chain(broker, tmp_path, **kw)
        made.append(c)
        return c

    try:
        yield make
    finally:
        for c in made:
            c.close()


@pytest.fixture
def chain(broker: Broker, tmp_path: Path) -> Iterator[Callable[..., Chain]]:
    """`chain(**options)` -> a started Chain (see Chain.__init__ for the options); closed at teardown."""
    yield from _chains(broker, tmp_path)


@pytest.fixture
def tls_chain(tls_broker: Broker, tmp_path: Path) -> Iterator[Callable[..., Chain]]:
    """As `chain`, on a TLS-only broker: the locker, the service and the tap all verify its certificate."""
    yield from _chains(tls_broker, tmp_path)
