"""The wall clock as the state machines see it: integer microseconds since the epoch."""

from __future__ import annotations

import time

__all__ = ["now_us"]


def now_us() -> int:
    return time.time_ns() // 1000
