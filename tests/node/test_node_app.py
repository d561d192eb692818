"""The combined TrustChain application: routing, the DNS view the CA reads, snapshot determinism."""

from __future__ import annotations

import hashlib

import pytest

from reference_node.cluster import run_dkg
from reference_node.genesis import Genesis
from trustchain.accounts import AccountResult, Ed25519AccountSigner, account_id, sign_write
from trustchain.app import kvstore, validation
from trustchain.app import trustchain as tcapp
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.ca import commands as cacommands
from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import app as ctapp
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import AddRecords, ZoneUpdate
from trustchain.encoding import decode, encode
from trustchain.errors import TrustChainError

T0 = 1_750_000_000_000_000
_, PUBLIC = run_dkg(4, 3, b"test")
GENESIS = Genesis("t", "trustchain.example", PUBLIC, "Root", PUBLIC, "Issuing",
                  {"ocsp": "http://o/", "root_crl": "http://c/r", "issuing_crl": "http://c/i",
                   "root_issuer": "http://i/r", "issuing_issuer": "http://i/i"}, b"\x07" * 32, "example/log", ())


CLUSTER = b"test-cluster"
SEEDS = [hashlib.sha256(b"%d" % i).digest() for i in range(4)]
VALIDATOR_KEYS = tuple(Ed25519Signer(s).public_key for s in SEEDS)
WRITER = Ed25519AccountSigner(SEEDS[1])  # validator 1 signs the writes below
ALICE = Ed25519AccountSigner(hashlib.sha256(b"alice").digest())


def _app(i: int) -> tcapp.TrustChainApplication:
    return tcapp.TrustChainApplication(GENESIS.ca_policy(VALIDATOR_KEYS), GENESIS.dns_master_seed,
                                       Ed25519Signer(SEEDS[i]), f"v{i}", "example/log", cluster=CLUSTER,
                                       validator_keys=VALIDATOR_KEYS)


def _signed(target: str, payload: bytes, n: int, signer: Ed25519AccountSigner = WRITER) -> bytes:
    return tcapp.signed_operation(signer, account_id(signer.key), CLUSTER, target, payload,
                                  nonce=n.to_bytes(16, "big"), deadline_us=T0 + 60_000_000)


VALIDATORS = [Ed25519AccountSigner(s) for s in SEEDS]


def _own_example_org() -> list[bytes]:
    """Alice registers, has the validators observe her control of example.org (3 of 4 agree), and
    creates the zone: the path for a name TrustChain does not serve yet."""
    return [
        tcapp.registration_operation(ALICE, CLUSTER, nonce=b"\x00" * 16, deadline_us=T0 + 1),
        _signed("validate", validation.open_command("example.org"), 100, ALICE),
        _signed("validate", validation.ready_command(1), 99, ALICE),
        *[_signed("observe", validation.observe_command(1, True), 101 + i, VALIDATORS[i]) for i in range(3)],
        _signed("dns", dnsapp.create_command("example.org.", primary_ns="ns1.example.org.",
                                             admin="h.example.org.", nameservers=["ns1.example.org."]), 1, ALICE),
    ]


def _ops() -> list[Operation]:
    update = ZoneUpdate("example.org.", (AddRecords("_acme-challenge.www.example.org.", "TXT", 300, ('"abc"',)),))
    payloads = [
        *_own_example_org(),
        _signed("dns", dnsapp.update_command(update), 2, ALICE),
        _signed("kv", kvstore.put(b"a", b"1"), 3, ALICE),
        _signed("ca", cacommands.challenge_command(["www.example.org"]), 4, ALICE),
        _signed("ct", ctapp.add_chain(b"\x30\x03\x02\x01\x01"), 5, ALICE),
        b"garbage",
    ]
    return [Operation(b"\xaa" * 32, i + 1, p) for i, p in enumerate(payloads)]


def test_routing_and_results() -> None:
    app = _app(0)
    results = app.execute(_ops(), ExecutionContext(1, T0))
    opened = validation.decode_result(results[1])
    assert opened.record_name == "_acme-challenge.example.org" and opened.expected
    assert validation.decode_result(results[2]).status == "ready"
    assert [validation.decode_result(r).status for r in results[3:6]] == ["recorded", "recorded", "decided"]
    assert validation.decode_result(results[5]).outcome == "validated"
    results = results[6:]
    created, updated = dnsapp.decode_result(results[0]), dnsapp.decode_result(results[1])
    assert (created.op, created.origin, created.serial) == (dnsapp.OP_CREATE, "example.org.", 1) and created.ok
    assert (updated.status, updated.op, updated.serial) == (dnsapp.STATUS_OK, dnsapp.OP_UPDATE, 2)
    assert kvstore.decode_result(results[2]) == kvstore.KVResult(kvstore.STATUS_OK, size=1)
    assert cacommands.decode_result(results[3]).status == cacommands.STATUS_CHALLENGE
    assert ctapp.decode_result(results[4]).status == ctapp.STATUS_OK
    assert tcapp.decode_routed(results[5], cacommands.decode_result) == tcapp.RouteError(
        "target: malformed routed operation")
    assert app.ca.lookup.txt("_acme-challenge.www.example.org") == ["abc"]
    assert app.ca.lookup.txt("nothing.example.com") == []


def test_router_errors_are_typed_and_other_bytes_are_malformed_results() -> None:
    app = _app(0)
    write = sign_write(WRITER, account_id(WRITER.key), CLUSTER, "nope", kvstore.put(b"a", b"1"),
                       nonce=b"\x01" * 16, deadline_us=T0 + 1)
    unknown = Operation(b"\xaa" * 32, 1, encode(tcapp.Routed(tcapp.SIGNED, encode(write))))
    result = app.execute([unknown], ExecutionContext(1, T0))[0]
    assert tcapp.decode_routed(result, cacommands.decode_result) == tcapp.RouteError(
        "target: unknown sub-application 'nope'")
    with pytest.raises(tcapp.MalformedResult, match="result: "):
        tcapp.decode_routed(b"OK", cacommands.decode_result)
    assert issubclass(tcapp.MalformedResult, TrustChainError)


def test_snapshot_is_deterministic_and_restores() -> None:
    a, b = _app(0), _app(1)  # different validators (own CT keys), same replicated state
    for app in (a, b):
        app.execute(_ops(), ExecutionContext(1, T0))
    assert a.snapshot() == b.snapshot()
    c = _app(2)
    c.restore(a.snapshot())
    assert c.snapshot() == a.snapshot() and c.kv.data == {b"a": b"1"} and c.ct.size == 1
    assert c.ca.lookup.txt("_acme-challenge.www.example.org") == ["abc"]


def test_consecutive_dns_operations_are_signed_once_with_the_same_result() -> None:
    """The router hands a run of DNS operations to the DNS application together (zones are re-signed once per
    run, not once per update); results and replicated state equal executing them one at a time."""
    updates = [ZoneUpdate("example.org.", (AddRecords(f"h{k}.example.org.", "A", 300, (f"192.0.2.{k}",)),))
               for k in range(1, 6)]
    payloads = [*_own_example_org(),
                *[_signed("dns", dnsapp.update_command(u), 2 + k, ALICE) for k, u in enumerate(updates)],
                _signed("ca", cacommands.challenge_command(["h1.example.org"]), 9, ALICE)]
    ops = [Operation(b"\xaa" * 32, i + 1, p) for i, p in enumerate(payloads)]
    together, one_by_one = _app(0), _app(1)
    signs: list[int] = []
    original = together.dns._sign

    def counting(now: int, changed: set) -> None:  # type: ignore[type-arg]
        signs.append(len(changed))
        original(now, changed)

    together.dns._sign = counting  # type: ignore[method-assign]
    results = together.execute(ops, ExecutionContext(1, T0))
    assert signs == [1]  # one signing pass for the six DNS operations, before the CA operation read the zone
    expected = [one_by_one.execute([op], ExecutionContext(1, T0))[0] for op in ops]
    assert results == expected and all(dnsapp.decode_result(r).status == dnsapp.STATUS_OK for r in results[6:12])
    assert together.snapshot() == one_by_one.snapshot()


def test_unsigned_replayed_forged_and_unregistered_writes_are_refused() -> None:
    app = _app(0)
    put = kvstore.put(b"k", b"v")

    def run(payload: bytes) -> object:
        raw = app.execute([Operation(b"\xaa" * 32, 1, payload)], ExecutionContext(1, T0))[0]
        return tcapp.decode_routed(raw, kvstore.decode_result)

    assert run(tcapp.route("kv", put)) == tcapp.RouteError(
        "authorization: writes must be signed by an account (target 'signed')")
    assert isinstance(run(_signed("kv", put, 1)), kvstore.KVResult)
    assert run(_signed("kv", put, 1)) == tcapp.RouteError("nonce: already used (replayed write)")
    unregistered = run(_signed("kv", put, 2, ALICE))
    assert unregistered == tcapp.RouteError("account: not registered")
    forged = tcapp.signed_operation(ALICE, account_id(WRITER.key), CLUSTER, "kv", put, nonce=b"\x03" * 16,
                                    deadline_us=T0 + 1)
    assert run(forged) == tcapp.RouteError("signature: does not verify with the account's key")


def test_a_registered_account_writes_but_may_not_order_validator_operations() -> None:
    app = _app(0)
    reg = tcapp.registration_operation(ALICE, CLUSTER, "mailto:alice@example.org", nonce=b"\x01" * 16,
                                       deadline_us=T0 + 1)
    raw = app.execute([Operation(b"\xbb" * 32, 1, reg)], ExecutionContext(1, T0))[0]
    assert decode(AccountResult, raw).ok
    assert app.accounts.is_active(account_id(ALICE.key))
    raw = app.execute([Operation(b"\xbb" * 32, 2, _signed("kv", kvstore.put(b"k", b"v"), 2, ALICE))],
                      ExecutionContext(2, T0))[0]
    assert kvstore.decode_result(raw).ok
    raw = app.execute([Operation(b"\xbb" * 32, 3, _signed("dns", dnsapp.tick_command(), 3, ALICE))],
                      ExecutionContext(3, T0))[0]
    assert tcapp.decode_routed(raw, dnsapp.decode_result) == tcapp.RouteError(
        "authorization: only a validator may order dns tick")


MALLORY = Ed25519AccountSigner(hashlib.sha256(b"mallory").digest())


def _zone(origin: str) -> bytes:
    ns = "ns1.example.net."  # valid for every origin, the root included
    return dnsapp.create_command(origin, primary_ns=ns, admin="h.example.net.", nameservers=[ns])


def _dns_detail(app: tcapp.TrustChainApplication, payload: bytes, seq: int) -> str:
    raw = app.execute([Operation(b"\xbb" * 32, seq, payload)], ExecutionContext(seq, T0))[0]
    res = tcapp.decode_routed(raw, dnsapp.decode_result)
    return res.detail if isinstance(res, tcapp.RouteError) or not res.ok else "ok"


def test_mallory_cannot_take_alices_zone_or_names_by_any_dns_path() -> None:
    app = _app(0)
    app.execute([Operation(b"\xaa" * 32, i + 1, p) for i, p in enumerate(_own_example_org())], ExecutionContext(1, T0))
    reg = tcapp.registration_operation(MALLORY, CLUSTER, nonce=b"\x09" * 16, deadline_us=T0 + 1)
    app.execute([Operation(b"\xbb" * 32, 1, reg)], ExecutionContext(2, T0))
    txt = ZoneUpdate("example.org.", (AddRecords("_acme-challenge.www.example.org.", "TXT", 300, ('"m"',)),))
    attempts = {
        "rewrite Alice's zone": (_signed("dns", dnsapp.update_command(txt), 10, MALLORY),
                                 "update.authorization: only the zone's owner may change it"),
        "zone under Alice's": (_signed("dns", _zone("_acme-challenge.pay.example.org."), 11, MALLORY),
                               "create.origin: inside example.org., which another account owns"),
        "the root": (_signed("dns", _zone("."), 12, MALLORY), "create.origin"),
        "a TLD": (_signed("dns", _zone("com."), 13, MALLORY), "create.origin"),
        "a public suffix": (_signed("dns", _zone("co.uk."), 14, MALLORY), "create.origin: co.uk is a public suffix"),
        "an unserved name": (_signed("dns", _zone("victim-bank.org."), 15, MALLORY),
                             "create.origin: victim-bank.org is not served by TrustChain"),
        "a validator's job": (_signed("dns", dnsapp.tick_command(), 16, MALLORY), "authorization:"),
    }
    for what, (payload, expected) in attempts.items():
        assert _dns_detail(app, payload, 20).startswith(expected), what
    # Alice still owns her zone and can change it; a validator cannot take it either
    assert _dns_detail(app, _signed("dns", dnsapp.update_command(txt), 30, ALICE), 21) == "ok"
    assert _dns_detail(app, _signed("dns", dnsapp.update_command(txt), 31, VALIDATORS[2]), 22).startswith(
        "update.authorization")


def test_one_lying_validator_cannot_validate_an_outside_name() -> None:
    app = _app(0)
    reg = tcapp.registration_operation(MALLORY, CLUSTER, nonce=b"\x09" * 16, deadline_us=T0 + 1)
    opened = _signed("validate", validation.open_command("victim-bank.org"), 1, MALLORY)
    early = _signed("observe", validation.observe_command(1, True), 8, VALIDATORS[3])  # before "ready"
    ready = _signed("validate", validation.ready_command(1), 7, MALLORY)
    lie = _signed("observe", validation.observe_command(1, True), 2, VALIDATORS[3])
    honest = [_signed("observe", validation.observe_command(1, False), 3 + i, VALIDATORS[i]) for i in range(2)]
    forged = _signed("observe", validation.observe_command(1, True), 9, MALLORY)  # not a validator
    ops = [reg, opened, early, ready, lie, forged, *honest]
    results = app.execute([Operation(b"\xbb" * 32, i + 1, p) for i, p in enumerate(ops)], ExecutionContext(1, T0))
    assert validation.decode_result(results[2]).detail.startswith("validation_id: the account has not published")
    assert tcapp.decode_routed(results[5], validation.decode_result) == tcapp.RouteError(
        "authorization: only a validator may order observe *")
    assert validation.decode_result(results[7]).outcome == "failed"
    assert _dns_detail(app, _signed("dns", _zone("victim-bank.org."), 20, MALLORY), 2).startswith("create.origin")


def test_key_value_data_belongs_to_its_writer_within_a_quota() -> None:
    app = _app(0)
    regs = [tcapp.registration_operation(s, CLUSTER, nonce=bytes([i]) * 16, deadline_us=T0 + 1)
            for i, s in enumerate((ALICE, MALLORY))]
    app.execute([Operation(b"\xbb" * 32, i + 1, p) for i, p in enumerate(regs)], ExecutionContext(1, T0))

    def kv(payload: bytes, n: int, who: Ed25519AccountSigner) -> kvstore.KVResult:
        raw = app.execute([Operation(b"\xbb" * 32, n, _signed("kv", payload, n, who))], ExecutionContext(n, T0))[0]
        res = tcapp.decode_routed(raw, kvstore.decode_result)
        assert isinstance(res, kvstore.KVResult)
        return res

    assert kv(kvstore.put(b"alice/k", b"v"), 10, ALICE).ok
    assert kv(kvstore.put(b"alice/k", b"x"), 11, MALLORY).detail == "key: owned by another account"
    assert kv(kvstore.delete(b"alice/k"), 12, MALLORY).detail == "key: owned by another account"
    chunk = b"\x00" * (1 << 20)
    outcomes = [kv(kvstore.put(b"m%d" % i, chunk), 20 + i, MALLORY) for i in range(5)]
    assert [o.ok for o in outcomes] == [True, True, True, False, False]
    assert outcomes[3].detail.startswith("limits.kv.max_account_bytes:")
    assert kv(kvstore.put(b"alice/k2", chunk), 30, ALICE).ok  # Mallory's full quota costs Alice nothing
    assert kv(kvstore.delete(b"m0"), 31, MALLORY).ok and kv(kvstore.put(b"m3", chunk), 32, MALLORY).ok
    copy = _app(1)
    copy.restore(app.snapshot())
    assert copy.snapshot() == app.snapshot() and copy.kv.usage == app.kv.usage
