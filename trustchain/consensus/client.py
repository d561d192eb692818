"""A PBFT client as a sans-I/O state machine: one outstanding request, accepted on f+1 matching
replies from distinct replicas (at least one of them honest), retransmitted with backoff."""

from __future__ import annotations

from trustchain.consensus.certificates import InvalidMessage, SignatureChecker
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.effects import Broadcast, CancelTimer, Effect, RequestCompleted, SetTimer
from trustchain.consensus.messages import Envelope, Kind, Reply, Request, pack, unpack
from trustchain.crypto.signing import ED25519, Signer, Verifier
from trustchain.encoding import DecodeError
from trustchain.errors import TrustChainError

__all__ = ["TIMER_RETRANSMIT", "Client", "ClientBusy"]

TIMER_RETRANSMIT = "retransmit"


class ClientBusy(TrustChainError, RuntimeError):
    """`submit` while a request is outstanding: a PBFT client has one at a time."""


class Client:
    def __init__(
        self,
        config: ClusterConfig,
        signer: Signer,
        verifier: Verifier = ED25519,
        retransmit_us: int = 1_000_000,
        max_retransmit_us: int = 16_000_000,
    ) -> None:
        self.config = config
        self.signer = signer
        self.verifier = verifier
        self.checker = SignatureChecker(config, verifier)
        # Every configuration this client has been given, by epoch: replies are checked against the
        # validator set that signed them, and f+1 of them must agree within one epoch.
        self._checkers: dict[int, SignatureChecker] = {config.epoch: self.checker}
        self.retransmit_us = retransmit_us
        self.max_retransmit_us = max_retransmit_us
        self.timestamp = 0
        self.outstanding: Request | None = None
        self.sent_at_us = 0
        self._backoff = retransmit_us
        self._replies: dict[tuple[int, int], bytes] = {}
        self.rejected = 0
        self.retransmissions = 0

    def learn_config(self, config: ClusterConfig) -> None:
        """A later validator set (learnt from a certified configuration change): the newest one is
        used from now on, and replies signed under it are accepted."""
        if config.epoch not in self._checkers:
            self._checkers[config.epoch] = SignatureChecker(config, self.verifier)
        if config.epoch > self.config.epoch:
            self.config, self.checker = config, self._checkers[config.epoch]

    @property
    def id(self) -> bytes:
        return self.signer.public_key

    def submit(self, operation: bytes, now: int) -> list[Effect]:
        if self.outstanding is not None:
            raise ClientBusy("a PBFT client has one outstanding request at a time")
        self.timestamp += 1
        self.outstanding = Request.create(self.signer, self.timestamp, operation)
        self.sent_at_us = now
        self._backoff = self.retransmit_us
        self._replies = {}
        return [Broadcast(pack(self.outstanding)), SetTimer(TIMER_RETRANSMIT, now + self._backoff)]

    def receive(self, data: bytes, now: int) -> list[Effect]:
        req = self.outstanding
        try:
            env = unpack(data)
            if not isinstance(env, Envelope):
                raise InvalidMessage("unexpected", "clients only take replies")
            checker = self._checkers.get(env.epoch)
            if checker is None:
                raise InvalidMessage("unknown_epoch", f"reply of epoch {env.epoch}")
            reply: Reply = checker.open(env, Kind.REPLY)
        except (DecodeError, InvalidMessage):
            self.rejected += 1
            return []
        if req is None or reply.client != self.id or reply.timestamp != req.timestamp:
            return []  # late reply to an earlier request
        if reply.replica != env.sender:
            self.rejected += 1
            return []
        self._replies.setdefault((env.epoch, env.sender), reply.result)
        matching = sum(1 for (e, _), r in self._replies.items() if e == env.epoch and r == reply.result)
        if matching < checker.config.weak_quorum:
            return []
        self.outstanding = None
        return [CancelTimer(TIMER_RETRANSMIT), RequestCompleted(req.timestamp, reply.result)]

    def on_timer(self, name: str, now: int) -> list[Effect]:
        if name != TIMER_RETRANSMIT or self.outstanding is None:
            return []
        self.retransmissions += 1
        self._backoff = min(self.max_retransmit_us, self._backoff * 2)
        return [Broadcast(pack(self.outstanding)), SetTimer(TIMER_RETRANSMIT, now + self._backoff)]
