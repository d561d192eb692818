"""The simulated network: a networkx graph whose links carry latency models, plus loss, duplication,
reordering, partitions (symmetric and one-way, scheduled) and a global stabilisation time.

All randomness comes from the `random.Random` handed in, consumed in a fixed order, so a run is a
pure function of its seed.
"""

from __future__ import annotations

import math
import random

import networkx as nx

from sim.scenario import NetworkSpec

# One-way latencies in milliseconds between regions (rough public inter-region medians / 2).
_WAN_MS: dict[frozenset[str], float] = {}
_WAN_TABLE = {
    ("us-east", "us-west"): 32, ("us-east", "eu-west"): 38, ("us-east", "eu-central"): 45,
    ("us-east", "ap-south"): 95, ("us-east", "ap-northeast"): 75, ("us-east", "sa-east"): 60,
    ("us-west", "eu-west"): 68, ("us-west", "eu-central"): 75, ("us-west", "ap-south"): 110,
    ("us-west", "ap-northeast"): 55, ("us-west", "sa-east"): 90, ("eu-west", "eu-central"): 12,
    ("eu-west", "ap-south"): 60, ("eu-west", "ap-northeast"): 110, ("eu-west", "sa-east"): 95,
    ("eu-central", "ap-south"): 55, ("eu-central", "ap-northeast"): 115, ("eu-central", "sa-east"): 100,
    ("ap-south", "ap-northeast"): 65, ("ap-south", "sa-east"): 150, ("ap-northeast", "sa-east"): 130,
}
for (a, b), ms in _WAN_TABLE.items():
    _WAN_MS[frozenset((a, b))] = ms
INTRA_REGION_MS = 1.0


class Network:
    """Decides, per message, whether and when it arrives. Every node name (replica, twin, client) is
    placed at a replica site; partitions and WAN regions apply by site."""

    def __init__(self, spec: NetworkSpec, n: int, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self.graph: nx.Graph[int] = nx.Graph()
        regions = spec.latency.regions or ("local",)
        for i in range(n):
            self.graph.add_node(i, region=regions[i % len(regions)])
        for i in range(n):
            for j in range(i + 1, n):
                self.graph.add_edge(i, j, base_ms=self._base_ms(i, j))
        self.gst_us = round(spec.gst_s * 1_000_000)
        self.placement: dict[object, int] = {}  # node name (replica, twin, client) -> replica site
        self.dropped = 0
        self.duplicated = 0

    def _base_ms(self, i: int, j: int) -> float:
        lat = self.spec.latency
        if lat.model == "wan":
            ri, rj = self.graph.nodes[i]["region"], self.graph.nodes[j]["region"]
            return INTRA_REGION_MS if ri == rj else _WAN_MS[frozenset((ri, rj))]
        return 0.0

    def place(self, name: object, replica: int) -> None:
        self.placement[name] = replica

    def _site(self, node: object) -> int | None:
        return self.placement.get(node)

    def partitioned(self, src: object, dst: object, now_us: int) -> bool:
        a, b = self._site(src), self._site(dst)
        if a is None or b is None:
            return False
        for p in self.spec.partitions:
            if not p.start_s * 1e6 <= now_us < p.heal_s * 1e6:
                continue
            if p.groups:
                ga = next((k for k, g in enumerate(p.groups) if a in g), -1)
                gb = next((k for k, g in enumerate(p.groups) if b in g), -1)
                if ga != gb:
                    return True
            if a in p.one_way_from and b in p.one_way_to:
                return True
        return False

    def _latency_ms(self, src: object, dst: object) -> float:
        lat = self.spec.latency
        rng = self.rng
        if lat.model == "constant":
            return lat.ms
        if lat.model == "uniform":
            return rng.uniform(lat.low_ms, lat.high_ms)
        if lat.model == "lognormal":
            return lat.median_ms * math.exp(rng.gauss(0.0, lat.sigma))
        a, b = self._site(src), self._site(dst)
        if a is None or b is None or a == b:
            base = INTRA_REGION_MS
        else:
            base = self.graph.edges[min(a, b), max(a, b)]["base_ms"]
        return base * math.exp(rng.gauss(0.0, lat.sigma)) if lat.sigma else base

    def route(self, src: object, dst: object, now_us: int) -> list[int]:
        """Delays (µs) of the copies of one message that will arrive: empty if it is lost."""
        spec = self.spec
        rng = self.rng
        if self.partitioned(src, dst, now_us):
            self.dropped += 1
            return []
        before_gst = now_us < self.gst_us
        loss = spec.loss + (spec.pre_gst_loss if before_gst else 0.0)
        extra_ms, duplicate = 0.0, spec.duplicate
        for ch in spec.changes:
            if ch.start_s * 1e6 <= now_us < ch.end_s * 1e6:
                loss += ch.loss
                extra_ms += ch.extra_delay_ms
                duplicate += ch.duplicate
        if loss and rng.random() < loss:
            self.dropped += 1
            return []
        copies = 1
        if duplicate and rng.random() < duplicate:
            copies = 2
            self.duplicated += 1
        delays = []
        for _ in range(copies):
            ms = self._latency_ms(src, dst)
            if spec.jitter_ms:
                ms += rng.uniform(0.0, spec.jitter_ms)
            if spec.reorder and rng.random() < spec.reorder:
                ms += rng.uniform(0.0, spec.reorder_ms)
            if before_gst and spec.pre_gst_extra_delay_ms:
                ms += rng.uniform(0.0, spec.pre_gst_extra_delay_ms)
            ms += extra_ms
            delays.append(max(1, round(ms * 1000)))
        return delays
