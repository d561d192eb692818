"""Fixtures for the DNS tests."""

from __future__ import annotations

import pytest
from dns_testutil import make_zone, seed

from trustchain.dns.keys import KeySet
from trustchain.dns.zone import Zone


@pytest.fixture
def zone() -> Zone:
    return make_zone()


@pytest.fixture
def keys() -> KeySet:
    return KeySet.initial(seed("ksk"), seed("zsk"))
