"""The CA's wire format: every op in the dispatch table round-trips, results are typed and strict, and a
malformed command is an error result naming the field that failed."""

from __future__ import annotations

import dataclasses
import struct
import typing

import pytest
from ca_testutil import CA_DOMAIN, T0_US, MutableDNS, ca_name, issuer_profile, make_csr, seeded

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.ca import commands as cacommands
from trustchain.ca import frost, issuance
from trustchain.ca import policy as capolicy
from trustchain.encoding import DecodeError, decode, encode

GROUP = frost.trusted_dealer_keygen(5, 3, seeded(11))
PROFILE = issuer_profile(ca_name("TrustChain Issuing E1"), GROUP.public.group_public_key)
ALICE = b"\xaa" * 32

SAMPLES: list[cacommands.Command] = [
    cacommands.ChallengeCommand(("www.example.org", "*.example.org")),
    cacommands.IssueRequest(make_csr(["www.example.org"])[1], ("www.example.org",), ("proof",), "ops", "pay-1", 3600),
    cacommands.FinalizeCommand(7, b"\x01" * 64),
    cacommands.RevokeCommand(b"\x0a\x0b", 4),
    cacommands.InstallIssuerCommand(b"\x30\x00"),
    cacommands.SignCRLCommand(True),
    cacommands.SignOCSPBatchCommand(12),
    cacommands.RevokeIssuerCommand(b"\x0c", 2),
    cacommands.SignRootCommand(False),
    cacommands.SerialCommitCommand((b"\x01" * 32,)),
    cacommands.SerialRevealCommand((cacommands.SerialReveal(b"\x01" * 32, b"\x02" * 32),)),
    cacommands.FinalizeBatchCommand((cacommands.FinalizeCommand(1, b"\x02" * 64),)),
]


def app() -> issuance.CAApplication:
    return issuance.CAApplication(capolicy.CAPolicy(PROFILE, CA_DOMAIN), MutableDNS())


def execute(payload: bytes) -> cacommands.CAResult:
    out = app().execute([Operation(ALICE, 1, payload)], ExecutionContext(1, T0_US))[0]
    res = cacommands.decode_result(out)
    assert encode(res) == out  # results are canonical: decoding and encoding again gives the same bytes
    return res


def test_the_dispatch_table_covers_every_command_type_once() -> None:
    types = typing.get_args(cacommands.Command)
    assert {t.OP for t in types} == set(issuance.HANDLERS) and len(types) == len(issuance.HANDLERS)
    assert all(issuance.HANDLERS[t.OP][0] is t for t in types)
    assert {type(s) for s in SAMPLES} == set(types)


@pytest.mark.parametrize("command", SAMPLES, ids=lambda c: c.OP)
def test_every_op_round_trips_and_is_answered_with_a_typed_result(command: cacommands.Command) -> None:
    payload = cacommands.encode_command(command)
    envelope = decode(cacommands.CACommand, payload)
    command_type, _ = issuance.HANDLERS[envelope.op]
    assert envelope.op == command.OP and decode(command_type, envelope.body) == command
    res = execute(payload)  # executed through the table: a typed answer, never an exception
    assert res.status in cacommands.STATUSES


def test_builders_encode_the_same_commands() -> None:
    csr = make_csr(["www.example.org"])[1]
    req = cacommands.IssueRequest(csr, ("www.example.org",), ("p",), "ops", "pay")
    assert cacommands.challenge_command(["a.example"]) == cacommands.encode_command(
        cacommands.ChallengeCommand(("a.example",)))
    assert cacommands.request_command(req) == cacommands.encode_command(req)
    assert cacommands.finalize_command(3, b"s") == cacommands.encode_command(cacommands.FinalizeCommand(3, b"s"))
    assert cacommands.revoke_command(0x0A0B, 1) == cacommands.encode_command(cacommands.RevokeCommand(b"\x0a\x0b", 1))
    assert cacommands.install_issuer_command(b"d") == cacommands.encode_command(cacommands.InstallIssuerCommand(b"d"))
    assert cacommands.sign_crl_command() == cacommands.encode_command(cacommands.SignCRLCommand(False))
    assert cacommands.sign_ocsp_batch_command(5) == cacommands.encode_command(cacommands.SignOCSPBatchCommand(5))


@pytest.mark.parametrize("command", SAMPLES, ids=lambda c: c.OP)
def test_a_malformed_body_is_an_error_naming_the_field(command: cacommands.Command) -> None:
    cls = type(command)
    first = dataclasses.fields(cls)[0].name
    empty = execute(encode(cacommands.CACommand(command.OP, b"")))
    assert (empty.status, empty.field) == (cacommands.STATUS_ERROR, f"{cls.__name__}.{first}"), empty
    assert "truncated" in empty.reason
    trailing = execute(encode(cacommands.CACommand(command.OP, encode(command) + b"\x00")))
    assert (trailing.status, trailing.field) == (cacommands.STATUS_ERROR, cls.__name__), trailing
    assert "trailing" in trailing.reason


def test_malformed_fields_envelopes_and_ops_are_named() -> None:
    # a FinalizeCommand whose signature claims more bytes than there are
    body = struct.pack(">Q", 7) + struct.pack(">I", 1000) + b"\x00" * 8
    res = execute(encode(cacommands.CACommand("finalize", body)))
    assert res.field == "FinalizeCommand.signature" and not res.ok, res
    # a bool that is neither 0 nor 1
    res = execute(encode(cacommands.CACommand("sign_crl", b"\x02")))
    assert res.field == "SignCRLCommand.force", res
    assert execute(b"").field == "CACommand.op"
    assert execute(encode(cacommands.CACommand("sign_crl", b"\x00"))[:-1]).field == "CACommand.body"
    unknown = execute(encode(cacommands.CACommand("mint", b"")))
    assert (unknown.field, unknown.reason) == ("op", "unknown operation 'mint'")


def test_results_are_strict() -> None:
    tokens = (cacommands.ChallengeToken("example.org", "tok.thumb"),)
    samples = [
        cacommands.CAResult(cacommands.STATUS_CHALLENGE, challenges=tokens),
        cacommands.CAResult(cacommands.STATUS_PENDING, "", cacommands.KIND_CERTIFICATE, (4,), b"\x01\x02"),
        cacommands.CAResult(cacommands.STATUS_OK, "", cacommands.KIND_CERTIFICATE, (4,), b"\x01", certificate_der=b"c"),
        cacommands.CAResult(cacommands.STATUS_SIGNING, "", cacommands.KIND_OCSP, (5, 6, 7)),
        cacommands.CAResult(cacommands.STATUS_UNCHANGED, "CRL 2 is current", cacommands.KIND_CRL, number=2),
        cacommands.CAResult(cacommands.STATUS_STALE, "revoked meanwhile", cacommands.KIND_OCSP, (8,), b"\x03"),
        cacommands.CAResult(cacommands.STATUS_OK, "", cacommands.KIND_ISSUER, issuer_key=b"k" * 32),
        cacommands.CAResult.error("names: 'x': single-label names are not allowed"),
    ]
    for res in samples:
        assert cacommands.decode_result(encode(res)) == res
    assert samples[0].proofs() == {"example.org": "tok.thumb"} and samples[1].pending_id == 4
    err = samples[-1]
    assert not err.ok and (err.field, err.reason) == ("names", "'x': single-label names are not allowed")
    assert all(r.ok and r.field == r.reason == "" for r in samples[:-1])
    with pytest.raises(DecodeError, match="status"):
        cacommands.decode_result(encode(dataclasses.replace(samples[0], status="ok")).replace(b"ok", b"no", 1))
    with pytest.raises(DecodeError, match="kind"):
        cacommands.decode_result(encode(samples[1]).replace(b"certificate", b"certifikate", 1))
    with pytest.raises(DecodeError):
        cacommands.decode_result(b"OK issued 0a0b")
    with pytest.raises(ValueError, match="status"):
        cacommands.CAResult("maybe")
