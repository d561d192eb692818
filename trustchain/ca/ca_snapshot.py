"""The CA application's snapshot: every version it was ever written in, and how each is restored.

Why a module of its own: the replicated CA's state spans several modules (issuance, revocation, the
root's state, serial randomness), and its encoding must stay readable for every version a replica may
hold on disk or receive by state transfer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trustchain.ca.ratelimit import SlidingWindow
from trustchain.ca.records import (
    IssuedCertificate,
    PendingIssuance,
    PendingSignature,
    SignedCRL,
    SignedOCSP,
    StoredChallenge,
)
from trustchain.ca.revocation import RevocationState
from trustchain.ca.root import RootSnapshot, RootState
from trustchain.ca.serials import SerialRandomness, SerialsSnapshot
from trustchain.encoding import DecodeError, decode, encode

if TYPE_CHECKING:
    from trustchain.ca.issuance import CAApplication

__all__ = ["capture", "load"]


@dataclass(frozen=True)
class _Count:
    key: bytes
    value: int


@dataclass(frozen=True)
class _Window:
    key: str
    times: tuple[int, ...]


@dataclass(frozen=True)
class _SnapshotV1:
    version: int
    next_pending_id: int
    issuer_certificates: tuple[bytes, ...]
    challenges: tuple[StoredChallenge, ...]
    pending: tuple[PendingIssuance, ...]
    issued: tuple[IssuedCertificate, ...]
    spent_payments: tuple[str, ...]
    windows: tuple[_Window, ...]
    bad_finalizers: tuple[_Count, ...]


@dataclass(frozen=True)
class _Snapshot:
    """Version 2 adds CRL/OCSP state. ``ocsp`` is in refresh order (oldest first) and ``ocsp_dirty`` in
    the order serials became dirty: both orders are replicated state, since batches follow them."""

    version: int
    next_pending_id: int
    issuer_certificates: tuple[bytes, ...]
    challenges: tuple[StoredChallenge, ...]
    pending: tuple[PendingIssuance, ...]
    issued: tuple[IssuedCertificate, ...]
    spent_payments: tuple[str, ...]
    windows: tuple[_Window, ...]
    bad_finalizers: tuple[_Count, ...]
    signatures: tuple[PendingSignature, ...]
    crl: SignedCRL | None
    next_crl_number: int
    ocsp: tuple[SignedOCSP, ...]
    ocsp_dirty: tuple[bytes, ...]


@dataclass(frozen=True)
class _SnapshotV3:
    """Version 3 adds the root's state (issuing certificates, root CRL and OCSP) and serial randomness."""

    version: int
    base: _Snapshot
    root: RootSnapshot
    serials: SerialsSnapshot



def capture(app: CAApplication) -> bytes:
    """The CA's replicated state, canonically encoded (version 3)."""
    rev = app.revocation
    snap = _Snapshot(
        version=2,
        next_pending_id=app.next_pending_id,
        issuer_certificates=tuple(app.issuer_certificates),
        challenges=tuple(app.challenges[k] for k in sorted(app.challenges)),
        pending=tuple(app.pending[k] for k in sorted(app.pending)),
        issued=tuple(app.issued[k] for k in sorted(app.issued)),
        spent_payments=tuple(sorted(app.spent_payments)),
        windows=tuple(_Window(k, v) for k, v in app.rate.items()),
        bad_finalizers=tuple(_Count(k, app.bad_finalizers[k]) for k in sorted(app.bad_finalizers)),
        signatures=tuple(rev.signatures[k] for k in sorted(rev.signatures)),
        crl=rev.crl,
        next_crl_number=rev.next_crl_number,
        ocsp=tuple(rev.ocsp.values()),
        ocsp_dirty=tuple(rev.ocsp_dirty),
    )
    return encode(_SnapshotV3(3, snap, app.root.snapshot(), app.serials.snapshot()))

def load(app: CAApplication, snapshot: bytes) -> None:
    """Replace ``app``'s replicated state with a snapshot of any version (older ones restore the newer
    state empty: the genesis issuer only, no serial randomness)."""
    version = int.from_bytes(snapshot[:8], "big") if len(snapshot) >= 8 else -1
    if version == 1:  # before CRL/OCSP state: restore it empty
        old = decode(_SnapshotV1, snapshot)
        snap = _Snapshot(2, old.next_pending_id, old.issuer_certificates, old.challenges, old.pending,
                         old.issued, old.spent_payments, old.windows, old.bad_finalizers, (), None, 1, (), ())
    elif version == 2:
        snap = decode(_Snapshot, snapshot)
    elif version == 3:
        v3 = decode(_SnapshotV3, snapshot)
        snap = v3.base
    else:
        raise DecodeError(f"CA snapshot version {version} unsupported")
    app.next_pending_id = snap.next_pending_id
    app.issuer_certificates = list(snap.issuer_certificates)
    app.challenges = {(c.account, c.name): c for c in snap.challenges}
    app.pending = {p.pending_id: p for p in snap.pending}
    app.issued = {c.serial: c for c in snap.issued}
    app.spent_payments = set(snap.spent_payments)
    app.rate = SlidingWindow()
    app.rate.events = {w.key: list(w.times) for w in snap.windows}
    app.bad_finalizers = {c.key: c.value for c in snap.bad_finalizers}
    rev = app.revocation = RevocationState(app)
    rev.signatures = {p.pending_id: p for p in snap.signatures}
    rev.crl = snap.crl
    rev.next_crl_number = snap.next_crl_number
    rev.ocsp = {r.serial: r for r in snap.ocsp}
    rev.ocsp_dirty = dict.fromkeys(snap.ocsp_dirty)
    rev.reindex()
    app.root = RootState(app)  # before version 3: the genesis issuer only
    app.serials = SerialRandomness(len(app.policy.validator_keys), app.policy.serial_contributors)
    if version == 3:
        app.root.restore(v3.root)
        app.serials.restore(v3.serials)
    app._events = []

