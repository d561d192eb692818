"""Static cluster parameters every replica must agree on."""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.quorum import max_faulty, quorum_size, weak_quorum_size

__all__ = ["ClusterConfig"]


@dataclass(frozen=True)
class ClusterConfig:
    """`replicas[i]` is the Ed25519 public key of replica i. Times are integer microseconds so that
    every replica and every replay computes the same values.

    `epoch` numbers the validator set (0 at genesis; each replicated change makes the next one) and
    is signed into every envelope; `base_seq` is the checkpoint the epoch starts from (0 at genesis,
    else the boundary checkpoint of the previous epoch), which every member holds without a proof of
    this epoch (see `trustchain.consensus.epochs`)."""

    replicas: tuple[bytes, ...]
    batch_size: int = 16
    batch_delay_us: int = 2_000
    checkpoint_interval: int = 16
    watermark_window: int = 32
    view_change_timeout_us: int = 2_000_000
    max_view_change_timeout_us: int = 60_000_000
    max_clock_skew_us: int = 5_000_000
    catchup_delay_us: int = 500_000
    state_reply_max_entries: int = 64
    epoch: int = 0
    base_seq: int = 0
    #: Adaptive batching (0 = off: fixed ``batch_size`` batches, the batch timer when short). When set, the
    #: primary keeps at most this many proposed batches unexecuted; a batch takes everything waiting up to
    #: ``max_batch_size``, so batches grow with the queue while the pipeline is busy, and a request that
    #: arrives at an idle primary is proposed at once.
    max_in_flight: int = 0
    max_batch_size: int = 0

    def __post_init__(self) -> None:
        n = len(self.replicas)
        if n < 1:
            raise ValueError("a cluster needs at least one replica")
        if self.epoch < 0 or self.base_seq < 0:
            raise ValueError("epoch and base_seq must be >= 0")
        if self.base_seq % self.checkpoint_interval:
            raise ValueError(f"base_seq {self.base_seq} is not a checkpoint (multiple of {self.checkpoint_interval})")
        if len(set(self.replicas)) != n:
            raise ValueError("replica public keys must be distinct")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_in_flight < 0 or self.max_batch_size < 0:
            raise ValueError("max_in_flight and max_batch_size must be >= 0")
        if self.checkpoint_interval < 1:
            raise ValueError(f"checkpoint_interval must be >= 1, got {self.checkpoint_interval}")
        if self.watermark_window < self.checkpoint_interval:
            raise ValueError(
                f"watermark_window ({self.watermark_window}) must be >= checkpoint_interval "
                f"({self.checkpoint_interval}), or the primary stalls before a checkpoint can become stable"
            )
        for name in ("batch_delay_us", "view_change_timeout_us", "max_clock_skew_us", "catchup_delay_us"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.view_change_timeout_us <= 0:
            raise ValueError("view_change_timeout_us must be > 0")

    @property
    def n(self) -> int:
        return len(self.replicas)

    @property
    def f(self) -> int:
        return max_faulty(self.n)

    @property
    def quorum(self) -> int:
        """ceil((n+f+1)/2): any two quorums share an honest replica (see `trustchain.quorum`)."""
        return quorum_size(self.n)

    @property
    def prepare_quorum(self) -> int:
        """Backup prepares a prepared certificate needs: the primary's pre-prepare is its own vote."""
        return self.quorum - 1

    @property
    def weak_quorum(self) -> int:
        """f+1: at least one honest replica among them."""
        return weak_quorum_size(self.n)

    def primary(self, view: int) -> int:
        return view % self.n
