"""Per-account CT quotas: submissions per window of consensus time, stored bytes per account and in all.

Each limit is probed at its boundary (exactly at the cap succeeds, one more is refused naming the
limit, another account unaffected); the CA's own appends are exempt; the usage survives a snapshot.
"""

from __future__ import annotations

import hashlib

import pytest
from ct_certs import make_cert, tbs_of

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import app as appmod
from trustchain.ct.app import CTApplication, CTResult, decode_result
from trustchain.ct.entry import PrecertEntry, X509Entry
from trustchain.ct.quota import CTQuota
from trustchain.encoding import DecodeError

ALICE, BOB = b"alice", b"bob"
SECOND = 1_000_000
CERTS = [make_cert(f"q{i}.example.com", serial=i + 1) for i in range(8)]


def _app(**quota: int) -> CTApplication:
    return CTApplication(Ed25519Signer(hashlib.sha256(b"v0").digest()), "v0", "quota.example/log",
                         quota=CTQuota(**quota))


def _submit(app: CTApplication, account: bytes, payload: bytes, t_us: int = 10 * SECOND) -> CTResult:
    return decode_result(app.execute([Operation(account, 1, payload)], ExecutionContext(1, t_us))[0])


def _refused(result: CTResult, limit: str) -> None:
    assert result.status == "error" and result.detail.startswith(f"limits.ct.{limit}: "), result


def test_submissions_per_window_at_the_cap_succeed_one_more_is_refused_until_the_window_moves() -> None:
    app = _app(submissions_per_window=3, window_us=60 * SECOND)
    assert [_submit(app, ALICE, appmod.add_chain(c), 10 * SECOND + i).status for i, c in enumerate(CERTS[:3])] \
        == ["ok", "ok", "ok"]
    _refused(_submit(app, ALICE, appmod.add_chain(CERTS[3]), 20 * SECOND), "submissions_per_window")
    _refused(_submit(app, ALICE, appmod.add_chain(CERTS[0]), 20 * SECOND), "submissions_per_window")  # duplicates too
    assert _submit(app, ALICE, b"\x00junk", 20 * SECOND).detail.startswith("command:")  # refused before counting
    assert app.size == 3
    assert _submit(app, BOB, appmod.add_chain(CERTS[3]), 20 * SECOND).status == "ok"
    # the first submission (at 10 s) leaves the window 60 s after it was made
    _refused(_submit(app, ALICE, appmod.add_chain(CERTS[4]), 70 * SECOND - 1), "submissions_per_window")
    assert _submit(app, ALICE, appmod.add_chain(CERTS[4]), 70 * SECOND).status == "ok"


def test_a_refused_chain_still_counts_against_the_rate() -> None:
    app = _app(submissions_per_window=2)
    assert _submit(app, ALICE, appmod.add_chain(b"\x30\x05")).status == "error"
    assert _submit(app, ALICE, appmod.add_chain(CERTS[0])).status == "ok"
    _refused(_submit(app, ALICE, appmod.add_chain(CERTS[1])), "submissions_per_window")


def test_stored_bytes_per_account_exactly_at_the_cap_and_one_more_refused() -> None:
    app = _app(max_account_bytes=len(CERTS[0]) + len(CERTS[1]))
    assert _submit(app, ALICE, appmod.add_chain(CERTS[0])).status == "ok"
    assert _submit(app, ALICE, appmod.add_chain(CERTS[1])).status == "ok"  # exactly at the cap
    _refused(_submit(app, ALICE, appmod.add_chain(CERTS[2])), "max_account_bytes")
    assert app.size == 2
    assert _submit(app, ALICE, appmod.add_chain(CERTS[0])).status == "duplicate"  # stores nothing new
    assert _submit(app, BOB, appmod.add_chain(CERTS[2])).status == "ok"
    assert _submit(app, BOB, appmod.add_chain(CERTS[1])).status == "duplicate"  # already logged by Alice


def test_a_precertificate_counts_its_tbs_and_issuer_key_hash() -> None:
    tbs = tbs_of(CERTS[0])
    app = _app(max_account_bytes=len(tbs) + 32)
    assert app.append(PrecertEntry(b"\x01" * 32, tbs), 1, account=ALICE).status == "ok"  # exactly at the cap
    refused = app.append(PrecertEntry(b"\x02" * 32, tbs), 2, account=ALICE)
    assert refused.status == "error" and "max_account_bytes" in refused.detail, refused


def test_total_bytes_bound_every_account_together() -> None:
    app = _app(max_total_bytes=len(CERTS[0]) + len(CERTS[1]))
    assert _submit(app, ALICE, appmod.add_chain(CERTS[0])).status == "ok"
    assert _submit(app, BOB, appmod.add_chain(CERTS[1])).status == "ok"  # exactly at the cap
    _refused(_submit(app, BOB, appmod.add_chain(CERTS[2])), "max_total_bytes")


def test_the_cas_own_appends_are_exempt() -> None:
    app = _app(max_total_bytes=len(CERTS[0]))
    assert _submit(app, ALICE, appmod.add_chain(CERTS[0])).status == "ok"
    _refused(_submit(app, ALICE, appmod.add_chain(CERTS[1])), "max_total_bytes")
    assert app.append(X509Entry(CERTS[1]), 20_000).status == "ok"
    assert app.size == 2


def test_usage_survives_a_snapshot_round_trip() -> None:
    assert len({len(c) for c in CERTS}) == 1
    limits = {"submissions_per_window": 2, "max_account_bytes": 2 * len(CERTS[0])}
    app = _app(**limits)
    assert _submit(app, ALICE, appmod.add_chain(CERTS[0])).ok and _submit(app, ALICE, appmod.add_chain(CERTS[1])).ok
    assert _submit(app, BOB, appmod.add_chain(CERTS[2])).ok
    copy = _app(**limits)
    copy.restore(app.snapshot())
    assert copy.snapshot() == app.snapshot()
    _refused(_submit(copy, ALICE, appmod.add_chain(CERTS[3])), "submissions_per_window")
    _refused(_submit(copy, ALICE, appmod.add_chain(CERTS[3]), 10_000 * SECOND), "max_account_bytes")
    assert _submit(copy, BOB, appmod.add_chain(CERTS[3])).ok
    without = CTApplication(Ed25519Signer(hashlib.sha256(b"v0").digest()), "v0", "quota.example/log")
    with pytest.raises(DecodeError, match="usage"):
        without.restore(app.snapshot())


def test_quota_must_be_positive_integers() -> None:
    with pytest.raises(ValueError, match="window_us"):
        CTQuota(window_us=0)
