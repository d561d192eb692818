"""CAApplication: deterministic approve/reject, pending TBS, finalize under the group key, revocation."""

from __future__ import annotations

import dataclasses

import pytest
from ca_testutil import (
    CA_DOMAIN,
    T0_US,
    Client,
    MutableDNS,
    ca_name,
    frost_signer,
    issuer_profile,
    make_csr,
    prove_and_request,
    run,
    seeded,
)
from cryptography import x509

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.ca import caa, frost, issuance, ownership
from trustchain.ca import commands as cacommands
from trustchain.ca import consensus_time as catime
from trustchain.ca import events as caevents
from trustchain.ca import policy as capolicy
from trustchain.ca.ratelimit import Limit

GROUP = frost.trusted_dealer_keygen(5, 3, seeded(7))
PROFILE = issuer_profile(ca_name("TrustChain Issuing E1"), GROUP.public.group_public_key)
SIGN = frost_signer(GROUP.key_packages, GROUP.public, [1, 3, 5], seeded(8))
OPERATOR = b"\x0f" * 32
ALICE = b"\xaa" * 32
BOB = b"\xbb" * 32


def make_app(**overrides: object) -> tuple[issuance.CAApplication, MutableDNS]:
    dns = MutableDNS()
    policy = capolicy.CAPolicy(issuer=PROFILE, ca_domain=CA_DOMAIN, operators=(OPERATOR,))
    policy = dataclasses.replace(policy, **overrides)  # type: ignore[arg-type]
    return issuance.CAApplication(policy, dns), dns


def pending_of(result: cacommands.CAResult) -> int:
    assert result.status == cacommands.STATUS_PENDING and result.kind == cacommands.KIND_CERTIFICATE, result
    return result.pending_id


def test_request_finalize_revoke_round_trip() -> None:
    app, dns = make_app()
    alice = Client(ALICE)
    res = prove_and_request(app, dns, alice, ["www.example.org", "example.org"], 1, T0_US)
    pid = pending_of(res)
    events = app.take_events()
    assert len(events) == 1 and isinstance(events[0], caevents.PendingRecorded)
    pending = events[0].pending
    assert pending.pending_id == pid and pending.names == ("www.example.org", "example.org")
    assert (res.pending_ids, res.serial) == ((pid,), pending.serial) and res.ok and not res.challenges
    # finalize with a real FROST signature from a 3-of-5 quorum
    sig = SIGN(pending.tbs)
    out = run(app, Operation(b"\x01" * 32, 1, cacommands.finalize_command(pid, sig)), 3, T0_US + 2_000_000)
    assert out == cacommands.CAResult(cacommands.STATUS_OK, "", cacommands.KIND_CERTIFICATE, (pid,), pending.serial,
                                      certificate_der=app.issued[pending.serial].certificate_der)
    cert = x509.load_der_x509_certificate(out.certificate_der)
    assert cert.tbs_certificate_bytes == pending.tbs
    assert frost.verify_signature(GROUP.public.group_public_key, pending.tbs, cert.signature)
    assert cert.not_valid_before_utc == catime.consensus_datetime(T0_US + 1_000_000)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() == 86_400 - 1
    assert isinstance(app.take_events()[0], caevents.Finalized)
    # a second finalize for the same pending is refused
    again = run(app, Operation(b"\x02" * 32, 1, cacommands.finalize_command(pid, sig)), 4, T0_US + 3_000_000)
    assert again.field == "pending"
    # only the subscriber or an operator can revoke
    serial = cert.serial_number
    assert run(app, Client(BOB).op(cacommands.revoke_command(serial, 1)), 5, T0_US + 4_000_000).field == "authorization"
    assert run(app, alice.op(cacommands.revoke_command(serial, 7)), 6, T0_US + 4_000_000).field == "reason"
    revoked = run(app, alice.op(cacommands.revoke_command(serial, 1)), 7, T0_US + 5_000_000)
    assert (revoked.status, revoked.kind, revoked.serial) == (cacommands.STATUS_OK, "certificate", pending.serial)
    again = run(app, alice.op(cacommands.revoke_command(serial, 1)), 8, T0_US + 6_000_000)
    assert (again.status, again.detail) == (cacommands.STATUS_UNCHANGED, "already revoked")
    status = app.status(serial)
    assert status is not None and status.reason == 1 and status.revoked_us == T0_US + 5_000_000
    assert [c.serial for c in app.revoked()] == [pending.serial]


def test_bad_finalize_signature_is_rejected_and_attributed() -> None:
    app, dns = make_app()
    pid = pending_of(prove_and_request(app, dns, Client(ALICE), ["a.example.org"], 1, T0_US))
    tbs = app.pending[pid].tbs
    good = SIGN(tbs)
    forged = bytes([good[0] ^ 1]) + good[1:]
    evil = b"\xee" * 32
    out = run(app, Operation(evil, 1, cacommands.finalize_command(pid, forged)), 3, T0_US + 2_000_000)
    assert out.field == "signature" and evil.hex()[:16] in out.reason
    assert app.bad_finalizers == {evil: 1}
    assert pid in app.pending and not app.issued
    assert run(app, Operation(b"\x01" * 32, 1, cacommands.finalize_command(pid, good)), 4, T0_US).status == "ok"


def test_finalize_batch_records_the_good_items_and_attributes_the_bad_one() -> None:
    app, dns = make_app()
    pids = [pending_of(prove_and_request(app, dns, Client(ALICE), [f"h{k}.example.org"], 1 + k, T0_US))
            for k in range(3)]
    sigs = [SIGN(app.pending[p].tbs) for p in pids]
    forged = bytes([sigs[1][0] ^ 1]) + sigs[1][1:]
    submitter = b"\x01" * 32
    [command] = cacommands.finalize_batch_commands([(pids[0], sigs[0]), (pids[1], forged), (pids[2], sigs[2])])
    out = run(app, Operation(submitter, 1, command), 10, T0_US + 2_000_000)
    assert out.status == "ok" and out.pending_ids == (pids[0], pids[2])
    assert pids[1] in app.pending and pids[0] not in app.pending and pids[2] not in app.pending
    assert len(app.issued) == 2 and app.bad_finalizers == {submitter: 1}
    finalized = [e.pending_id for e in app.take_events() if isinstance(e, caevents.Finalized)]
    assert finalized == [pids[0], pids[2]]


def test_finalize_batch_refuses_an_empty_or_oversized_batch() -> None:
    app, _ = make_app()
    empty = cacommands.encode_command(cacommands.FinalizeBatchCommand(()))
    assert run(app, Operation(b"\x01" * 32, 1, empty), 1, T0_US).field == "items"
    many = cacommands.FinalizeBatchCommand(tuple(cacommands.FinalizeCommand(k, b"\x00" * 64) for k in range(257)))
    assert run(app, Operation(b"\x01" * 32, 2, cacommands.encode_command(many)), 2, T0_US).field == "items"
    assert not app.bad_finalizers


@pytest.mark.parametrize(
    ("names", "field"),
    [
        (["*.example.org"], "names"),
        (["localhost"], "names"),
        (["bad_label.example.org"], "names"),
        (["10.0.0.1"], "names"),
        (["-x.example.org"], "names"),
    ],
)
def test_invalid_names_are_rejected(names: list[str], field: str) -> None:
    app, _ = make_app()
    out = run(app, Client(ALICE).op(cacommands.challenge_command(names)), 1, T0_US)
    assert out.status == cacommands.STATUS_ERROR and out.field == field, out


def test_wildcard_allowed_by_policy_and_issuewild() -> None:
    app, dns = make_app(allow_wildcards=True)
    dns.set_caa("example.org", [caa.CAARecord(0, "issue", CA_DOMAIN), caa.CAARecord(0, "issuewild", ";")])
    out = prove_and_request(app, dns, Client(ALICE), ["*.example.org"], 1, T0_US)
    assert out.field == "caa", out
    dns.set_caa("example.org", [caa.CAARecord(0, "issuewild", CA_DOMAIN)])
    pending_of(prove_and_request(app, dns, Client(ALICE), ["*.example.org"], 3, T0_US))


def test_caa_rules() -> None:
    dns = MutableDNS()
    assert caa.check_caa(dns, "www.example.org", CA_DOMAIN) is None  # no CAA anywhere: permitted
    dns.set_caa("example.org", [caa.CAARecord(0, "issue", "other-ca.example")])
    assert "does not authorize" in (caa.check_caa(dns, "www.example.org", CA_DOMAIN) or "")
    # the closest non-empty RRset wins (tree climbing)
    dns.set_caa("www.example.org", [caa.CAARecord(0, "issue", f"{CA_DOMAIN}; validationmethods=dns-01")])
    assert caa.check_caa(dns, "www.example.org", CA_DOMAIN) is None
    assert caa.check_caa(dns, "mail.example.org", CA_DOMAIN) is not None
    # only iodef: issuance is not restricted
    dns.set_caa("iodef.example", [caa.CAARecord(0, "iodef", "mailto:x@iodef.example")])
    assert caa.check_caa(dns, "iodef.example", CA_DOMAIN) is None
    # unknown critical tag forbids
    dns.set_caa("crit.example", [caa.CAARecord(128, "tbs", "x"), caa.CAARecord(0, "issue", CA_DOMAIN)])
    assert "critical" in (caa.check_caa(dns, "crit.example", CA_DOMAIN) or "")
    # ";" alone: nobody may issue
    dns.set_caa("none.example", [caa.CAARecord(0, "issue", ";")])
    assert caa.check_caa(dns, "none.example", CA_DOMAIN) is not None
    # accounturi (RFC 8657) pins one account
    dns.set_caa("pin.example", [caa.CAARecord(0, "issue", f"{CA_DOMAIN}; accounturi=trustchain:account:{'aa' * 32}")])
    assert caa.check_caa(dns, "pin.example", CA_DOMAIN, "trustchain:account:" + "aa" * 32) is None
    assert caa.check_caa(dns, "pin.example", CA_DOMAIN, "trustchain:account:" + "bb" * 32) is not None


def test_caa_denial_through_the_app() -> None:
    app, dns = make_app()
    dns.set_caa("example.org", [caa.CAARecord(0, "issue", "letsencrypt.org")])
    assert prove_and_request(app, dns, Client(ALICE), ["example.org"], 1, T0_US).field == "caa"


def test_ownership_proof_is_bound_to_account_and_dns() -> None:
    app, dns = make_app()
    alice, bob = Client(ALICE), Client(BOB)
    res = run(app, alice.op(cacommands.challenge_command(["example.org"])), 1, T0_US)
    assert res.status == cacommands.STATUS_CHALLENGE and [c.name for c in res.challenges] == ["example.org"]
    key_auth = res.challenges[0].key_authorization
    _, csr = make_csr(["example.org"])
    # no TXT record yet
    req = cacommands.IssueRequest(csr, ("example.org",), (key_auth,), "alice", "p1")
    assert run(app, alice.op(cacommands.request_command(req)), 2, T0_US).field == "ownership"
    from trustchain.ca import ownership

    dns.add_txt("_acme-challenge.example.org", ownership.dns01_txt(key_auth))
    # Bob replays Alice's proof: no challenge for him, and the token is bound to Alice's key
    assert run(app, bob.op(cacommands.request_command(req)), 3, T0_US).field == "ownership"
    wrong = dataclasses.replace(req, proofs=(key_auth[:-1] + "A",))
    assert run(app, alice.op(cacommands.request_command(wrong)), 4, T0_US).field == "ownership"
    pending_of(run(app, alice.op(cacommands.request_command(req)), 5, T0_US))
    # the challenge is consumed
    assert run(
        app, alice.op(cacommands.request_command(dataclasses.replace(req, payment_ref="p2"))), 6, T0_US
    ).field == "ownership"


def test_csr_checks() -> None:
    app, dns = make_app()
    alice = Client(ALICE)
    key_auth = run(app, alice.op(cacommands.challenge_command(["example.org"])), 1, T0_US).proofs()["example.org"]
    from trustchain.ca import ownership

    dns.add_txt("_acme-challenge.example.org", ownership.dns01_txt(key_auth))
    _, csr = make_csr(["example.org"])
    tampered = bytearray(csr)
    tampered[-5] ^= 1
    for bad in (b"garbage", bytes(tampered)):
        req = cacommands.IssueRequest(bad, ("example.org",), (key_auth,), "alice", "p")
        assert run(app, alice.op(cacommands.request_command(req)), 2, T0_US).field == "csr"
    _, other = make_csr(["other.example.org"])
    req = cacommands.IssueRequest(other, ("example.org",), (key_auth,), "alice", "p")
    assert run(app, alice.op(cacommands.request_command(req)), 3, T0_US).field == "names"


def test_payment_is_single_use_and_rate_limits_use_consensus_time() -> None:
    app, dns = make_app(account_limit=Limit(2, 3_600_000_000))
    alice = Client(ALICE)
    pending_of(prove_and_request(app, dns, alice, ["a.example.org"], 1, T0_US, payment="ref-1"))
    out = prove_and_request(app, dns, alice, ["b.example.org"], 3, T0_US, payment="ref-1")
    assert out.field == "payment", out
    pending_of(prove_and_request(app, dns, alice, ["b.example.org"], 5, T0_US, payment="ref-2"))
    out = prove_and_request(app, dns, alice, ["c.example.org"], 7, T0_US + 60_000_000, payment="ref-3")
    assert out.field == "rate", out
    # an hour of consensus time later the window has moved
    pending_of(prove_and_request(app, dns, alice, ["c.example.org"], 9, T0_US + 3_700_000_000, payment="ref-4"))


def test_domain_rate_limit_and_lifetime_bounds() -> None:
    app, dns = make_app(domain_limit=Limit(1, 86_400_000_000))
    pending_of(prove_and_request(app, dns, Client(ALICE), ["a.example.org"], 1, T0_US))
    assert prove_and_request(app, dns, Client(BOB), ["b.example.org"], 3, T0_US).field == "rate"
    too_long = prove_and_request(app, dns, Client(BOB), ["x.example.net"], 5, T0_US, lifetime_s=30 * 86400)
    assert too_long.field == "lifetime", too_long


def test_same_inputs_same_state_on_every_replica_and_snapshot_round_trip() -> None:
    apps = [make_app() for _ in range(3)]
    results = [prove_and_request(app, dns, Client(ALICE), ["example.org"], 1, T0_US) for app, dns in apps]
    assert len(set(results)) == 1
    snaps = {app.snapshot() for app, _ in apps}
    assert len(snaps) == 1
    restored, _ = make_app()
    restored.restore(snaps.pop())
    assert restored.snapshot() == apps[0][0].snapshot()
    assert restored.pending == apps[0][0].pending
    assert restored.rate.events == apps[0][0].rate.events


def test_pending_expires_in_consensus_time() -> None:
    app, dns = make_app(pending_ttl_us=10_000_000)
    pid = pending_of(prove_and_request(app, dns, Client(ALICE), ["example.org"], 1, T0_US))
    app.take_events()
    app.execute([], ExecutionContext(3, T0_US + 20_000_000))
    assert pid not in app.pending
    assert app.take_events() == [caevents.PendingExpired(pid)]


def test_malformed_commands_never_raise() -> None:
    from trustchain.encoding import encode

    app, _ = make_app()
    cases = [
        (b"", "CACommand.op"),
        (b"\xff" * 40, "CACommand.op"),
        (b"x", "CACommand.op"),
        (cacommands.finalize_command(99, b"\x00" * 64), "pending"),
        (cacommands.revoke_command(12345, 1), "serial"),
        (encode(cacommands.CACommand("nope", b"")), "op"),
    ]
    out = app.execute([Operation(ALICE, i, payload) for i, (payload, _) in enumerate(cases, 1)],
                      ExecutionContext(1, T0_US))
    results = [cacommands.decode_result(r) for r in out]
    assert [(r.status, r.field) for r in results] == [(cacommands.STATUS_ERROR, f) for _, f in cases], results


def test_install_issuer_rollover() -> None:
    root = frost.trusted_dealer_keygen(5, 3, seeded(70))
    new = frost.trusted_dealer_keygen(5, 3, seeded(71))
    from ca_testutil import issuer_profile as prof

    from trustchain.ca import x509 as cax509

    root_profile = prof(ca_name("TrustChain Root R1"), root.public.group_public_key, "root")
    root_sign = frost_signer(root.key_packages, root.public, [1, 2, 3], seeded(72))
    t = catime.consensus_datetime(T0_US)
    new_inter = cax509.issue(
        cax509.intermediate_tbs(ca_name("TrustChain Issuing E2"), new.public.group_public_key, root_profile, t, 2),
        root_sign,
        root.public.group_public_key,
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    app, dns = make_app(root_keys=(root.public.group_public_key,))
    der = new_inter.public_bytes(Encoding.DER)
    assert run(app, Client(ALICE).op(cacommands.install_issuer_command(der)), 1, T0_US).field == "authorization"
    pid_old = pending_of(prove_and_request(app, dns, Client(ALICE), ["old.example.org"], 2, T0_US))
    installed = run(app, Client(OPERATOR).op(cacommands.install_issuer_command(der)), 4, T0_US)
    assert (installed.status, installed.kind, installed.issuer_key) == ("ok", "issuer", new.public.group_public_key)
    pid_new = pending_of(prove_and_request(app, dns, Client(BOB), ["new.example.org"], 5, T0_US))
    assert app.pending[pid_new].issuer_key == new.public.group_public_key
    # the old pending keeps the old issuer key; each finalizes under its own key only
    new_sign = frost_signer(new.key_packages, new.public, [2, 4, 5], seeded(73))
    assert run(
        app,
        Operation(b"\x01" * 32, 1, cacommands.finalize_command(pid_old, new_sign(app.pending[pid_old].tbs))),
        7,
        T0_US,
    ).field == "signature"
    assert run(
        app, Operation(b"\x01" * 32, 2, cacommands.finalize_command(pid_old, SIGN(app.pending[pid_old].tbs))), 8, T0_US
    ).status == cacommands.STATUS_OK
    assert run(
        app,
        Operation(b"\x01" * 32, 3, cacommands.finalize_command(pid_new, new_sign(app.pending[pid_new].tbs))),
        9,
        T0_US,
    ).status == cacommands.STATUS_OK
    leaf = x509.load_der_x509_certificate(
        next(c for c in app.issued.values() if "new.example.org" in c.names).certificate_der
    )
    leaf.verify_directly_issued_by(new_inter)


def test_csr_key_types() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from trustchain.ca.approval import check_key

    assert check_key(ec.generate_private_key(ec.SECP521R1()).public_key()) is not None
    assert check_key(make_csr(["a.example"])[0].public_key()) is None


def test_the_certificates_key_holder_may_revoke_and_nobody_else() -> None:
    """RFC 8555 section 7.6: a signature by the certificate's private key authorizes revocation by any
    account, bound to that account and reason; a forged or reused proof does not."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    app, dns = make_app()
    alice, bob, mallory = Client(ALICE), Client(BOB), Client(b"\x66" * 32)
    pid = pending_of(prove_and_request(app, dns, alice, ["key.example.org"], 1, T0_US))
    pending = app.pending[pid]
    run(app, Operation(b"\x01" * 32, 1, cacommands.finalize_command(pid, SIGN(pending.tbs))), 3, T0_US + 2_000_000)
    key, _ = make_csr(["key.example.org"], 1)
    serial = int.from_bytes(pending.serial, "big")

    def proof(account: bytes, reason: int, signer: ec.EllipticCurvePrivateKey = key) -> bytes:
        message = ownership.revocation_proof_input(pending.serial, reason, account)
        return signer.sign(message, ec.ECDSA(hashes.SHA256()))

    other_key = ec.generate_private_key(ec.SECP256R1())
    refused = [
        run(app, mallory.op(cacommands.revoke_command(serial, 1)), 4, T0_US + 3_000_000),
        run(app, mallory.op(cacommands.revoke_command(serial, 1, proof(mallory.account, 1, other_key))), 5,
            T0_US + 3_000_000),
        run(app, mallory.op(cacommands.revoke_command(serial, 1, proof(bob.account, 1))), 6, T0_US + 3_000_000),
        run(app, mallory.op(cacommands.revoke_command(serial, 4, proof(mallory.account, 1))), 7, T0_US + 3_000_000),
    ]
    assert [r.field for r in refused] == ["authorization"] * 4 and app.status(serial).revoked_us is None  # type: ignore[union-attr]
    done = run(app, bob.op(cacommands.revoke_command(serial, 1, proof(bob.account, 1))), 8, T0_US + 4_000_000)
    assert done.status == cacommands.STATUS_OK and app.status(serial).reason == 1  # type: ignore[union-attr]
