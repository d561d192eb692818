"""Sliding-window rate limits measured in consensus time, so every replica counts the same events."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    count: int
    window_us: int


class SlidingWindow:
    """Per-key event times. ``check`` prunes expired events and says whether one more fits."""

    def __init__(self) -> None:
        self.events: dict[str, list[int]] = {}

    def _live(self, key: str, now_us: int, limit: Limit) -> list[int]:
        times = [t for t in self.events.get(key, []) if t > now_us - limit.window_us]
        if times:
            self.events[key] = times
        else:
            self.events.pop(key, None)
        return times

    def allows(self, key: str, now_us: int, limit: Limit) -> bool:
        return len(self._live(key, now_us, limit)) < limit.count

    def record(self, key: str, now_us: int) -> None:
        self.events.setdefault(key, []).append(now_us)

    def items(self) -> list[tuple[str, tuple[int, ...]]]:
        return [(k, tuple(self.events[k])) for k in sorted(self.events)]
