"""The run's trace: one canonical JSON line per event, hashed as it is written.

The digest covers every delivery, drop, timer firing, execution and fault, so two runs with the same
digest took the same path; `--check-determinism` compares digests across processes.
"""

from __future__ import annotations

import json
from typing import IO, Any

import blake3


class Trace:
    def __init__(self, sink: IO[str] | None = None) -> None:
        self._hash = blake3.blake3()
        self._sink = sink
        self.events = 0

    def record(self, t_us: int, event: str, *fields: Any) -> int:
        """Append one event; returns its index (used to point at the first violating event)."""
        line = json.dumps([t_us, event, *fields], separators=(",", ":"))
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        if self._sink is not None:
            self._sink.write(line)
            self._sink.write("\n")
        self.events += 1
        return self.events - 1

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()
