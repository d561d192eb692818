"""The node's Prometheus metrics: which counters, gauges and histograms a validator exports.

Kept apart from the driver so that the list of what is measured reads in one place; the driver only
calls `inc`/`observe`. Gauges read the node's state when scraped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reference_node.metrics import Registry

if TYPE_CHECKING:
    from reference_node.runtime import Node

__all__ = ["NodeMetrics"]


class NodeMetrics(Registry):
    """The registry `/api/v1/metrics` renders, with the node's instruments as attributes."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.node = node
        r = self
        self.issued = r.counter("trustchain_certificates_issued_total", "Certificates finalized (FROST-signed).")
        self.revoked = r.counter("trustchain_certificates_revoked_total", "Certificates revoked.")
        self.dns_queries = r.counter("trustchain_dns_queries_total", "DNS queries answered (API and listeners).")
        r.gauge("trustchain_dns_cache_hit_ratio",
                "Share of authoritative DNS answers served precomputed or from the answer cache.",
                self._dns_cache_hit_ratio)
        self.rounds = r.counter("trustchain_consensus_rounds_total", "Batches executed by this replica.")
        self.failures = r.counter("trustchain_consensus_failures_total",
                                  "View changes entered, storage refusals and timed-out submissions.")
        self.ct = r.counter("trustchain_ct_submissions_total", "CT entries appended (submissions and issuance).")
        r.gauge("trustchain_storage_usage_bytes", "Bytes used by the node database (with WAL).",
                lambda: float(node.storage.usage_bytes()))
        r.gauge("trustchain_consensus_view", "Current PBFT view.", lambda: float(node.replica_status().view))
        r.gauge("trustchain_consensus_last_executed", "Last executed sequence number.",
                lambda: float(node.replica_status().last_executed))
        self.sent_dropped = r.gauge("trustchain_transport_dropped_total", "Messages dropped by full send queues.",
                                    lambda: float(node.transport.stats.dropped))
        self.commit_latency = r.histogram("trustchain_request_latency_seconds",
                                          "Submission to own-replica execution, by sub-application.")
        self.http_latency = r.histogram("trustchain_http_request_duration_seconds", "HTTP API latency by route.")
        self.persist_latency = r.histogram("trustchain_storage_commit_seconds", "Durable commit (fsync) latency.")

    def _dns_cache_hit_ratio(self) -> float:
        """Answers from the precomputed table or the answer cache, over all answers those two saw."""
        authority = self.node.app.dns.authority  # replaced on restore: looked up each time
        hits = misses = 0
        if authority.table is not None:
            hits, misses = authority.table.stats.hits, authority.table.stats.misses
        if authority.cache is not None:
            hits, misses = hits + authority.cache.stats.hits, misses + authority.cache.stats.misses
        return hits / (hits + misses) if hits + misses else 0.0
