"""Round-robin choice between a behaviour's variants, in orders drawn from its RNG."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence


class Rotation:
    """Every variant that can be built goes out before any goes out twice, so a short run still shows
    each of them; the order within a round comes from the behaviour's own RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.round: list[str] = []

    def pick(self, wanted: Sequence[str], available: Collection[str]) -> str | None:
        """The next of `wanted` that is in `available` (None if none is)."""
        if not any(v in available for v in self.round):
            self.round = list(wanted)
            self.rng.shuffle(self.round)
        for v in self.round:
            if v in available:
                self.round.remove(v)
                return v
        return None
