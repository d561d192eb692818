"""Ordered CRL and OCSP signing: ``sign_crl`` / ``sign_ocsp_batch`` record pending TBS, FROST signs them
like certificates (through the signing services), ``finalize`` stores the signed bytes in replicated
state; openssl accepts them and a revoked serial reads revoked. Also the signing-service fixes:
``reconcile`` after a snapshot restore, and a restarted service's nonce epoch."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
from ca_chain import ISSUING_CERT, ISSUING_SIGN, OPERATOR, ROOT_CERT, issued_app, pem
from ca_testutil import T0_US, Client, prove_and_request, seeded
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509 import ocsp as xocsp
from test_ca_signing_service import GROUP, PEERS, SIGNERS, issue_through_services, setup

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.ca import ca_snapshot, issuance, ocsp
from trustchain.ca import commands as cacommands
from trustchain.ca import consensus_time as catime
from trustchain.ca import records as carecords
from trustchain.ca import signing_service as ss
from trustchain.encoding import encode

OPENSSL = shutil.which("openssl")
NODE = b"\x0e" * 32  # any validator's client key: the signing commands need no authorization


class Runner:
    """Executes ordered operations against one application with increasing seq and a given time."""

    def __init__(self, app: issuance.CAApplication, seq: int = 1000) -> None:
        self.app = app
        self.seq = seq
        self.ts = 0

    def __call__(self, payload: bytes, time_us: int, client: bytes = NODE) -> cacommands.CAResult:
        self.seq += 1
        self.ts += 1
        out = self.app.execute([Operation(client, self.ts, payload)], ExecutionContext(self.seq, time_us))[0]
        return cacommands.decode_result(out)

    def finalize_all(self, time_us: int) -> list[cacommands.CAResult]:
        """Sign every pending CRL/OCSP TBS with the (test) FROST signer and order the finalizes."""
        return [self(cacommands.finalize_command(pid, ISSUING_SIGN(sig.tbs)), time_us)
                for pid, sig in sorted(self.app.signatures.items())]


def fresh() -> tuple[Runner, list[x509.Certificate]]:
    app, certs = issued_app([["good.example.org"], ["revoked.example.org"], ["hold.example.org"]])
    run = Runner(app)
    assert run(cacommands.revoke_command(certs[1].serial_number, 1), T0_US + 10_000_000, OPERATOR).status == "ok"
    return run, certs


def ocsp_request(cert: x509.Certificate, algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    builder = xocsp.OCSPRequestBuilder().add_certificate(cert, ISSUING_CERT, algorithm or hashes.SHA1())
    return builder.build().public_bytes(serialization.Encoding.DER)


def served(app: issuance.CAApplication, cert: x509.Certificate, algorithm: hashes.HashAlgorithm | None = None
           ) -> xocsp.OCSPResponse:
    der = ocsp.serve(app.current_issuer, ocsp_request(cert, algorithm), app.ocsp_response, app.ocsp_known)
    return xocsp.load_der_ocsp_response(der)


def test_sign_crl_records_pending_and_finalize_stores_the_signed_crl() -> None:
    run, certs = fresh()
    now = T0_US + 20_000_000
    assert run.app.crl_due(now)
    out = run(cacommands.sign_crl_command(), now)
    assert (out.status, out.kind, out.number) == (cacommands.STATUS_SIGNING, cacommands.KIND_CRL, 1), out
    pid = out.pending_id
    assert pid in run.app.pending_items() and pid not in run.app.pending  # signed, but not a certificate
    assert not run.app.crl_due(now)
    assert run(cacommands.sign_crl_command(), now + 1) == cacommands.CAResult(
        cacommands.STATUS_UNCHANGED, "CRL 1 is being signed", cacommands.KIND_CRL, (pid,), number=1)
    # a bad signature is refused and attributed, like a bad certificate signature
    bad = run(cacommands.finalize_command(pid, bytes(64)), now + 2)
    assert bad.field == "signature" and run.app.bad_finalizers[NODE] == 1
    assert run.finalize_all(now + 3) == [cacommands.CAResult(cacommands.STATUS_OK, "", cacommands.KIND_CRL, (pid,),
                                                             number=1)]
    assert run.app.pending_items() == {}
    stored = run.app.crl
    assert stored is not None and stored.number == 1 and stored.count == 1
    crl = x509.load_der_x509_crl(stored.der)
    assert crl.is_signature_valid(ISSUING_CERT.public_key())  # type: ignore[arg-type]
    assert crl.issuer == ISSUING_CERT.subject
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    assert crl.last_update_utc == catime.consensus_datetime(now).replace(microsecond=0)
    assert [r.serial_number for r in crl] == [certs[1].serial_number]
    # nothing changed: no new CRL until the refresh interval passes; a revocation makes one due at once
    current = run(cacommands.sign_crl_command(), now + 5_000_000)
    assert (current.status, current.number, current.pending_ids) == (cacommands.STATUS_UNCHANGED, 1, ())
    assert run.app.crl_due(now + run.app.policy.crl_refresh_us)
    assert run(cacommands.revoke_command(certs[2].serial_number, 0), now + 6_000_000, OPERATOR).status == "ok"
    out = run(cacommands.sign_crl_command(), now + 7_000_000)
    assert (out.status, out.number) == (cacommands.STATUS_SIGNING, 2), out
    assert [(r.status, r.number) for r in run.finalize_all(now + 8_000_000)] == [(cacommands.STATUS_OK, 2)]
    assert {r.serial_number for r in x509.load_der_x509_crl(run.app.crl.der)} == {  # type: ignore[union-attr]
        certs[1].serial_number, certs[2].serial_number}
    # forcing a CRL is an operator command
    assert run(cacommands.sign_crl_command(force=True), now + 9_000_000).field == "authorization"
    forced = run(cacommands.sign_crl_command(force=True), now + 9_000_000, OPERATOR)
    assert (forced.status, forced.number) == (cacommands.STATUS_SIGNING, 3), forced


def test_ocsp_batches_sign_every_serial_and_a_revocation_reads_revoked() -> None:
    run, certs = fresh()
    app = run.app
    now = T0_US + 20_000_000
    assert all(served(app, c).response_status == xocsp.OCSPResponseStatus.TRY_LATER for c in certs)
    out = run(cacommands.sign_ocsp_batch_command(2), now)  # limit 2: the revoked serial comes first
    assert (out.status, out.kind) == (cacommands.STATUS_SIGNING, cacommands.KIND_OCSP), out
    assert out.pending_ids == tuple(sorted(app.signatures)) and len(out.pending_ids) == 2
    assert {s.serial for s in app.signatures.values()} == {
        carecords.serial_bytes(certs[1].serial_number), carecords.serial_bytes(certs[0].serial_number)}
    busy = run(cacommands.sign_ocsp_batch_command(), now)  # one batch at a time
    assert (busy.status, busy.pending_ids) == (cacommands.STATUS_UNCHANGED, out.pending_ids), busy
    assert not app.ocsp_due(now)
    assert [(r.status, r.kind, r.pending_id) for r in run.finalize_all(now + 1_000_000)] == [
        (cacommands.STATUS_OK, cacommands.KIND_OCSP, pid) for pid in out.pending_ids]
    assert app.ocsp_due(now + 1_000_000)
    assert len(run(cacommands.sign_ocsp_batch_command(), now + 2_000_000).pending_ids) == 1
    run.finalize_all(now + 3_000_000)
    assert not app.ocsp_due(now + 3_000_000) and len(app.ocsp) == 3
    expect = {0: xocsp.OCSPCertStatus.GOOD, 1: xocsp.OCSPCertStatus.REVOKED, 2: xocsp.OCSPCertStatus.GOOD}
    for i, status in expect.items():
        resp = served(app, certs[i])
        assert resp.response_status == xocsp.OCSPResponseStatus.SUCCESSFUL
        assert resp.certificate_status == status and resp.serial_number == certs[i].serial_number
        assert resp.responder_name == ISSUING_CERT.subject
        assert resp.signature_hash_algorithm is None  # Ed25519, by the FROST group key
        ISSUING_CERT.public_key().verify(resp.signature, resp.tbs_response_bytes)  # type: ignore[call-arg]
    revoked = served(app, certs[1])
    assert revoked.revocation_reason == x509.ReasonFlags.key_compromise
    assert revoked.revocation_time_utc == catime.consensus_datetime(T0_US + 10_000_000)
    # identical bytes for any request for that serial: no nonce, RFC 5019 SHA-1 CertID
    assert app.ocsp_response(certs[0].serial_number) == ocsp.serve(
        app.current_issuer, ocsp_request(certs[0]), app.ocsp_response, app.ocsp_known)
    assert served(app, certs[0], hashes.SHA256()).response_status == xocsp.OCSPResponseStatus.UNAUTHORIZED
    foreign = xocsp.OCSPRequestBuilder().add_certificate_by_hash(b"\0" * 20, b"\0" * 20, 5, hashes.SHA1()).build()
    assert xocsp.load_der_ocsp_response(ocsp.serve(
        app.current_issuer, foreign.public_bytes(serialization.Encoding.DER), app.ocsp_response, app.ocsp_known,
    )).response_status == xocsp.OCSPResponseStatus.UNAUTHORIZED
    assert xocsp.load_der_ocsp_response(ocsp.serve(app.current_issuer, b"junk", app.ocsp_response, app.ocsp_known)
                                        ).response_status == xocsp.OCSPResponseStatus.MALFORMED_REQUEST
    # revoking withdraws the good response at once (tryLater, never "good"), the next batch says revoked
    assert run(cacommands.revoke_command(certs[0].serial_number, 4), now + 4_000_000, OPERATOR).status == "ok"
    assert served(app, certs[0]).response_status == xocsp.OCSPResponseStatus.TRY_LATER
    assert len(run(cacommands.sign_ocsp_batch_command(), now + 5_000_000).pending_ids) == 1
    run.finalize_all(now + 6_000_000)
    resp = served(app, certs[0])
    assert resp.certificate_status == xocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason == x509.ReasonFlags.superseded
    # refresh: after ocsp_refresh_us every response is re-signed (oldest first); expired ones are dropped
    app.policy = dataclasses.replace(app.policy, ocsp_refresh_us=3_600_000_000)  # leaves here live 24 h
    later = now + app.policy.ocsp_refresh_us + 10_000_000
    assert app.ocsp_due(later)
    refresh = run(cacommands.sign_ocsp_batch_command(), later)
    assert (refresh.status, len(refresh.pending_ids)) == (cacommands.STATUS_SIGNING, 3), refresh
    run.finalize_all(later)
    expired = max(app.issued[s].not_after_us for s in app.issued) + 1
    assert run(cacommands.sign_ocsp_batch_command(), expired + app.policy.ocsp_refresh_us) == cacommands.CAResult(
        cacommands.STATUS_UNCHANGED, "every OCSP response is current", cacommands.KIND_OCSP)
    assert app.ocsp == {}


def test_revocation_while_a_good_response_is_being_signed() -> None:
    run, certs = fresh()
    now = T0_US + 20_000_000
    run(cacommands.sign_ocsp_batch_command(), now)
    good = [p for p, s in run.app.signatures.items() if s.serial == carecords.serial_bytes(certs[2].serial_number)]
    assert run(cacommands.revoke_command(certs[2].serial_number, 5), now + 1, OPERATOR).status == "ok"
    stale = [(r.pending_id, r.serial) for r in run.finalize_all(now + 2) if r.status == cacommands.STATUS_STALE]
    assert stale == [(good[0], carecords.serial_bytes(certs[2].serial_number))], good
    assert run.app.ocsp_response(certs[2].serial_number) is None  # the stale "good" was not stored
    run(cacommands.sign_ocsp_batch_command(), now + 3)
    run.finalize_all(now + 4)
    assert served(run.app, certs[2]).certificate_status == xocsp.OCSPCertStatus.REVOKED


def test_snapshot_is_deterministic_and_restores_pending_signatures() -> None:
    base, _ = fresh()
    start = base.app.snapshot()
    signatures: dict[bytes, bytes] = {}  # FROST signatures are randomised: sign each TBS once

    def scripted() -> Runner:
        app = issuance.CAApplication(base.app.policy, base.app.lookup)
        app.restore(start)
        run = Runner(app)

        def finalize(time_us: int) -> None:
            for pid, sig in sorted(app.signatures.items()):
                signature = signatures.setdefault(sig.tbs, ISSUING_SIGN(sig.tbs))
                assert run(cacommands.finalize_command(pid, signature), time_us).status == cacommands.STATUS_OK

        run(cacommands.sign_crl_command(), T0_US + 20_000_000)
        finalize(T0_US + 21_000_000)
        run(cacommands.sign_ocsp_batch_command(2), T0_US + 22_000_000)
        finalize(T0_US + 23_000_000)
        run(cacommands.sign_ocsp_batch_command(), T0_US + 24_000_000)  # left pending
        run(cacommands.sign_crl_command(force=True), T0_US + 24_000_000, OPERATOR)  # left pending
        return run

    a, b = scripted(), scripted()
    snap = a.app.snapshot()
    assert snap == b.app.snapshot()
    restored = issuance.CAApplication(a.app.policy, a.app.lookup)
    restored.restore(snap)
    assert restored.snapshot() == snap
    assert restored.pending_items() == a.app.pending_items() and len(restored.pending_items()) == 2
    assert list(restored.ocsp) == list(a.app.ocsp) and restored.crl == a.app.crl
    assert not restored.ocsp_due(T0_US + 24_000_000) and not restored.crl_due(T0_US + 24_000_000)
    # a version-1 snapshot (before CRL/OCSP state) still restores
    v1 = encode(ca_snapshot._SnapshotV1(1, 5, (), (), (), tuple(a.app.issued.values()), (), (), ()))
    old = issuance.CAApplication(a.app.policy, a.app.lookup)
    old.restore(v1)
    assert old.issued == a.app.issued and old.crl is None and old.crl_due(T0_US)
    assert old.ocsp_response(1) is None


def test_signing_services_sign_crl_and_ocsp_like_certificates() -> None:
    """Five services: they follow ``pending_items()`` through ``reconcile`` and finalize through consensus."""
    h, dns = setup(set(), set())
    pending = issue_through_services(h, dns, ["www.example.org"], 1)
    assert pending.serial in h.app.issued
    for cmd in (cacommands.sign_crl_command(), cacommands.sign_ocsp_batch_command()):
        h.seq += 1
        out = h.app.execute([Operation(NODE, h.seq, cmd)], ExecutionContext(h.seq, h.now))[0]
        assert cacommands.decode_result(out).status == cacommands.STATUS_SIGNING, out
        for i, s in h.services.items():
            h.apply(i, s.reconcile(h.app.pending_items(), h.now))
        h.run()
    assert h.app.pending_items() == {} and h.misbehaviour == []
    crl = x509.load_der_x509_crl(h.app.crl.der)  # type: ignore[union-attr]
    assert crl.is_signature_valid(Ed25519PublicKey.from_public_bytes(GROUP.public.group_public_key))
    resp = xocsp.load_der_ocsp_response(h.app.ocsp[pending.serial].der)
    assert resp.certificate_status == xocsp.OCSPCertStatus.GOOD
    # the services' done-set is compacted once nothing is pending
    assert all(s.reconcile(h.app.pending_items(), h.now) == [] for s in h.services.values())
    assert all(s.done_below > max(h.app.next_pending_id - 1, 0) and not s.finalized for s in h.services.values())


def test_reconcile_picks_up_pending_restored_from_a_snapshot() -> None:
    """State transfer restores pending issuances without events: reconcile hands them to the service."""
    h, dns = setup(set(), set())
    res = prove_and_request(h.app, dns, Client(b"\xab" * 32), ["api.example.org"], 1, h.now)
    pid = res.pending_id
    h.app.take_events()  # nobody told the services
    # a replica that caught up by state transfer: a fresh application restored from a snapshot
    caught_up = issuance.CAApplication(h.app.policy, h.app.lookup)
    caught_up.restore(h.app.snapshot())
    assert caught_up.take_events() == []
    for i, s in h.services.items():
        h.apply(i, s.reconcile(caught_up.pending_items(), h.now))
    h.run()
    assert pid not in h.app.pending and len(h.app.issued) == 1
    # finalized elsewhere: reconcile with the new pending set stops the work and compacts
    for s in h.services.values():
        assert s.reconcile(h.app.pending_items(), h.now) == [] and pid not in s.pending and s._done(pid)


def test_restarted_service_uses_a_new_nonce_epoch() -> None:
    """A restarted signer numbering nonces from 1 again would collide with the commitments its previous
    incarnation left in aggregators' pools (aggregators keep the old ones; the signer no longer has
    their nonces, so every session it is picked for times out). With a new epoch the aggregators drop
    the dead incarnation's commitments when the new ones arrive, and signing needs no timeout."""
    h, dns = setup(set(), set())
    old = h.services[3]
    assert all(nid >> ss.EPOCH_SHIFT == 0 for nid in h.services[1].pools[3])
    new = ss.SigningService(GROUP.key_packages[3], GROUP.public, SIGNERS[3], PEERS, seeded(99), epoch=1)
    assert new.next_nonce_id == (1 << ss.EPOCH_SHIFT) + 1 and new.next_session == (1 << ss.EPOCH_SHIFT) + 1
    h.services[3] = new
    h.apply(3, new.start(h.now))
    h.run()
    assert old is not new
    for agg in (1, 2, 4, 5):
        pool = h.services[agg].pools[3]
        assert pool and all(nid >> ss.EPOCH_SHIFT == 1 for nid in pool), (agg, sorted(pool))
    # stale commitments of epoch 0 arriving late are ignored
    h.services[1]._add_to_pool(3, (ss.PublishedCommitment(7, b"\0" * 32, b"\0" * 32),))
    assert 7 not in h.services[1].pools[3]
    sessions = sum(s.next_session for s in h.services.values())
    for k, name in enumerate(["a.example.org", "b.example.org", "c.example.org"]):
        pending = issue_through_services(h, dns, [name], 10 + 3 * k)
        assert pending.serial in h.app.issued
    # one session per certificate: no signer was picked with a commitment it could not honour
    assert sum(s.next_session for s in h.services.values()) - sessions == 3
    with pytest.raises(ValueError):
        ss.SigningService(GROUP.key_packages[3], GROUP.public, SIGNERS[3], PEERS, seeded(1), epoch=1 << 31)


@pytest.mark.skipif(OPENSSL is None, reason="openssl binary not installed")
def test_openssl_accepts_the_stored_crl_and_ocsp_responses(tmp_path: Path) -> None:
    run, certs = fresh()
    now = T0_US + 20_000_000
    run(cacommands.sign_crl_command(), now)
    run(cacommands.sign_ocsp_batch_command(), now)
    run.finalize_all(now + 1_000_000)
    assert run.app.crl is not None and len(run.app.ocsp) == 3
    (tmp_path / "ca.pem").write_bytes(pem(ROOT_CERT) + pem(ISSUING_CERT))
    (tmp_path / "root.pem").write_bytes(pem(ROOT_CERT))
    (tmp_path / "inter.pem").write_bytes(pem(ISSUING_CERT))
    (tmp_path / "crl.der").write_bytes(run.app.crl.der)
    out = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"), "-noout", "-verify",
                          "-CAfile", str(tmp_path / "ca.pem")], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "verify OK" in out.stdout + out.stderr, out.stdout + out.stderr
    pem_crl = x509.load_der_x509_crl(run.app.crl.der).public_bytes(serialization.Encoding.PEM)
    (tmp_path / "crl.pem").write_bytes(pem_crl)
    at = str(T0_US // 1_000_000 + 60)
    for i, ok in ((0, True), (1, False)):
        (tmp_path / "leaf.pem").write_bytes(pem(certs[i]))
        v = subprocess.run(["openssl", "verify", "-attime", at, "-crl_check", "-CRLfile", str(tmp_path / "crl.pem"),
                            "-CAfile", str(tmp_path / "root.pem"), "-untrusted", str(tmp_path / "inter.pem"),
                            str(tmp_path / "leaf.pem")], capture_output=True, text=True, check=False)
        assert (v.returncode == 0) == ok, v.stdout + v.stderr
    for i, word in ((0, "good"), (1, "revoked"), (2, "good")):
        (tmp_path / "leaf.pem").write_bytes(pem(certs[i]))
        (tmp_path / "resp.der").write_bytes(run.app.ocsp_response(certs[i].serial_number) or b"")
        # produced in consensus time (2025): -attime checks the chain then; the response's own
        # thisUpdate/nextUpdate are checked against the wall clock, so allow for the difference.
        out = subprocess.run(["openssl", "ocsp", "-respin", str(tmp_path / "resp.der"), "-no_nonce",
                              "-CAfile", str(tmp_path / "root.pem"), "-issuer", str(tmp_path / "inter.pem"),
                              "-cert", str(tmp_path / "leaf.pem"), "-attime", at, "-validity_period", "1000000000"],
                             capture_output=True, text=True, check=False)
        text = out.stdout + out.stderr
        assert out.returncode == 0 and "Response verify OK" in text, text
        assert f"leaf.pem: {word}" in text and "WARNING" not in text, text


def test_pre_signed_ocsp_bytes_do_not_depend_on_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """cryptography stamps producedAt with the current time; replicas must build identical bytes."""
    import datetime as dt

    from cryptography.x509 import ocsp as x509_ocsp

    from trustchain.ca import ocsp as caocsp

    base, _ = fresh()
    issuer = base.app.current_issuer
    produced = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    status = caocsp.CertStatus(known=True)
    first = caocsp.presigned_tbs(issuer, 77, status, produced)
    real_sign = x509_ocsp.OCSPResponseBuilder.sign

    def sign_later(self: x509_ocsp.OCSPResponseBuilder, *args: object) -> x509_ocsp.OCSPResponse:
        import time

        time.sleep(1.1)  # the wall clock moves on: producedAt must not
        return real_sign(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(x509_ocsp.OCSPResponseBuilder, "sign", sign_later)
    assert caocsp.presigned_tbs(issuer, 77, status, produced) == first
    parsed = x509_ocsp.load_der_ocsp_response(caocsp.assemble_response(first, bytes(64)))
    assert parsed.produced_at_utc == produced  # consensus time, not the moment of signing
