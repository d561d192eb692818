"""Fixtures the node tests share: a loopback "public DNS" and an http-01 web server, one of each per module."""

from __future__ import annotations

import pytest
from acme_helpers import ChallengeServer
from signed_client import PublicDNS


@pytest.fixture(scope="module")
def public_dns() -> PublicDNS:
    return PublicDNS()


@pytest.fixture(scope="module")
def web() -> ChallengeServer:
    return ChallengeServer()
