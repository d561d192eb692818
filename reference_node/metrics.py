"""A minimal Prometheus registry (text exposition format 0.0.4): counters, gauges, histograms."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Labels = tuple[tuple[str, str], ...]


def _fmt_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{v}"'.replace("\n", " ") for k, v in items) + "}"


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


class Metric:
    def __init__(self, name: str, help_text: str, kind: str) -> None:
        self.name, self.help, self.kind = name, help_text, kind

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(Metric):
    def __init__(self, name: str, help_text: str, kind: str = "counter") -> None:
        super().__init__(name, help_text, kind)
        self.values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = value

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        values = self.values or {(): 0.0}
        return [f"{self.name}{_fmt_labels(k)} {_num(v)}" for k, v in sorted(values.items())]


class Gauge(Counter):
    """A value sampled at render time when `source` is given."""

    def __init__(self, name: str, help_text: str, source: Callable[[], float] | None = None) -> None:
        super().__init__(name, help_text, "gauge")
        self.source = source

    def render(self) -> list[str]:
        if self.source is not None:
            self.values[()] = float(self.source())
        return super().render()


class Histogram(Metric):
    def __init__(self, name: str, help_text: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help_text, "histogram")
        self.buckets = tuple(buckets)
        self.series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts, sums = self.series.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0]))
        for i, b in enumerate(self.buckets):
            if value <= b:
                counts[i] += 1
        counts[-1] += 1
        sums[0] += value

    def count(self, **labels: str) -> int:
        s = self.series.get(tuple(sorted(labels.items())))
        return s[0][-1] if s else 0

    def render(self) -> list[str]:
        out = []
        for key, (counts, sums) in sorted(self.series.items()):
            for b, c in zip(self.buckets, counts, strict=False):
                out.append(f"{self.name}_bucket{_fmt_labels(key, (('le', _num(b)),))} {c}")
            out.append(f"{self.name}_bucket{_fmt_labels(key, (('le', '+Inf'),))} {counts[-1]}")
            out.append(f"{self.name}_sum{_fmt_labels(key)} {_num(sums[0])}")
            out.append(f"{self.name}_count{_fmt_labels(key)} {counts[-1]}")
        return out


class Registry:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def counter(self, name: str, help_text: str) -> Counter:
        m = Counter(name, help_text)
        self.metrics[name] = m
        return m

    def gauge(self, name: str, help_text: str, source: Callable[[], float] | None = None) -> Gauge:
        m = Gauge(name, help_text, source)
        self.metrics[name] = m
        return m

    def histogram(self, name: str, help_text: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        m = Histogram(name, help_text, buckets)
        self.metrics[name] = m
        return m

    def render(self) -> str:
        lines: list[str] = []
        for m in self.metrics.values():
            lines.append(f"# HELP {m.name} {m.help}")
            lines.append(f"# TYPE {m.name} {m.kind}")
            lines.extend(m.render())
        return "\n".join(lines) + "\n"
