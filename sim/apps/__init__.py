"""Replicated applications the simulator can run, by the name scenarios use (`application.name`)."""

from __future__ import annotations

from sim.apps.authz import AuthzSimApp
from sim.apps.base import SimApp
from sim.apps.ca import CASimApp
from sim.apps.ct import CTSimApp
from sim.apps.dns import DNSSimApp
from sim.apps.kv import KVApp
from sim.apps.outside import OutsideDNSSimApp

APPS: dict[str, type[SimApp]] = {cls.name: cls for cls in (KVApp, DNSSimApp, CTSimApp, CASimApp, AuthzSimApp,
                                                          OutsideDNSSimApp)}
APP_BEHAVIOURS: dict[str, str] = {b: cls.name for cls in APPS.values() for b in cls.behaviours}

__all__ = ["APPS", "APP_BEHAVIOURS", "SimApp"]
