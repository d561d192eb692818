"""Wire messages of the FROST signing service (``signing_service``): what validators send each other on
the signing channel, each Ed25519-signed by its sender over a domain-separated encoding that names the
receiver, and how one input's messages to one peer are coalesced into as few as possible."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from trustchain.crypto.signing import ED25519, Signer, Verifier
from trustchain.encoding import DecodeError, decode, encode

__all__ = [
    "DOMAIN", "EPOCH_SHIFT", "MAX_BATCH", "ROOT_DOMAIN", "VERSION",
    "CommitmentRequest", "Commitments", "MsgKind", "PublishedCommitment",
    "SessionCommitment", "Share", "Shares", "SignRequest", "SignRequests", "SignedMessage", "coalesce",
    "open_message", "seal",
]

DOMAIN = _DOMAIN = b"trustchain/ca/frost-signing/v1\x00"
#: The root key's signing service (root CRL, OCSP for issuing CAs) signs its messages under this domain, so
#: that no message of one service is ever taken for the other's.
ROOT_DOMAIN = b"trustchain/ca/frost-signing/root/v1\x00"
VERSION = 1
EPOCH_SHIFT = 32


class MsgKind(IntEnum):
    COMMITMENTS = 1
    SIGN_REQUEST = 2
    SHARE = 3
    COMMITMENT_REQUEST = 4
    SIGN_REQUESTS = 5
    SHARES = 6


@dataclass(frozen=True)
class PublishedCommitment:
    """A round-1 commitment pre-published by its signer to one aggregator, named by ``nonce_id``."""

    nonce_id: int
    hiding: bytes
    binding: bytes


@dataclass(frozen=True)
class Commitments:
    commitments: tuple[PublishedCommitment, ...]


@dataclass(frozen=True)
class CommitmentRequest:
    count: int


@dataclass(frozen=True)
class SessionCommitment:
    identifier: int
    nonce_id: int
    hiding: bytes
    binding: bytes


@dataclass(frozen=True)
class SignRequest:
    pending_id: int
    session: int
    commitments: tuple[SessionCommitment, ...]


@dataclass(frozen=True)
class Share:
    pending_id: int
    session: int
    share: bytes
    replenish: tuple[PublishedCommitment, ...]


@dataclass(frozen=True)
class SignRequests:
    """Several sign requests from one aggregator to one signer, answered by one ``Shares``."""

    requests: tuple[SignRequest, ...]


@dataclass(frozen=True)
class Shares:
    shares: tuple[Share, ...]


MAX_BATCH = 1024  # items in one SignRequests or Shares; more are ignored (a peer cannot make us loop)

_KIND_TYPES: dict[MsgKind, type] = {
    MsgKind.COMMITMENTS: Commitments,
    MsgKind.SIGN_REQUEST: SignRequest,
    MsgKind.SHARE: Share,
    MsgKind.COMMITMENT_REQUEST: CommitmentRequest,
    MsgKind.SIGN_REQUESTS: SignRequests,
    MsgKind.SHARES: Shares,
}
_TYPE_KINDS = {v: k for k, v in _KIND_TYPES.items()}


@dataclass(frozen=True)
class SignedMessage:
    version: int
    kind: int
    sender: int
    receiver: int
    body: bytes
    signature: bytes

    def signing_bytes(self, domain: bytes = _DOMAIN) -> bytes:
        return domain + struct.pack(">QQQQ", self.version, self.kind, self.sender, self.receiver) + self.body


def seal(signer: Signer, sender: int, receiver: int, message: Any, domain: bytes = _DOMAIN) -> bytes:
    """Sign ``message`` from ``sender`` to ``receiver`` (the receiver is signed so a message cannot be
    replayed to another validator; ``domain`` names the key the service signs with)."""
    kind = int(_TYPE_KINDS[type(message)])
    unsigned = SignedMessage(VERSION, kind, sender, receiver, encode(message), b"")
    return encode(SignedMessage(VERSION, kind, sender, receiver, unsigned.body,
                                signer.sign(unsigned.signing_bytes(domain))))


def open_message(
    data: bytes, peers: Mapping[int, bytes], receiver: int, verifier: Verifier = ED25519, domain: bytes = _DOMAIN
) -> tuple[int, Any]:
    """(sender, message) of authenticated bytes; raises ``DecodeError`` for anything else."""
    msg = decode(SignedMessage, data)
    if msg.version != VERSION:
        raise DecodeError(f"SignedMessage.version: unsupported {msg.version}")
    if msg.receiver != receiver:
        raise DecodeError("SignedMessage.receiver: not addressed to this validator")
    key = peers.get(msg.sender)
    if key is None or not verifier.verify(key, msg.signing_bytes(domain), msg.signature):
        raise DecodeError(f"SignedMessage: bad signature or unknown sender {msg.sender}")
    try:
        cls = _KIND_TYPES[MsgKind(msg.kind)]
    except ValueError:
        raise DecodeError(f"SignedMessage.kind: unknown {msg.kind}") from None
    return msg.sender, decode(cls, msg.body)


def coalesce(cls: type, items: Sequence[Any]) -> list[Any]:
    """Messages of one kind to one receiver, merged: sign requests into ``SignRequests`` and shares into
    ``Shares`` (at most ``MAX_BATCH`` items each), commitments into one ``Commitments``."""
    if len(items) == 1:
        return [items[0]]
    if cls is SignRequest:
        return [SignRequests(tuple(items[k:k + MAX_BATCH])) for k in range(0, len(items), MAX_BATCH)]
    if cls is Share:
        return [Shares(tuple(items[k:k + MAX_BATCH])) for k in range(0, len(items), MAX_BATCH)]
    if cls is Commitments:
        return [Commitments(tuple(c for m in items for c in m.commitments))]
    if cls is CommitmentRequest:
        return [CommitmentRequest(max(m.count for m in items))]
    return list(items)
