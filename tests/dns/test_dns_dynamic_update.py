"""RFC 2136 dynamic updates: translation of UPDATE messages, prerequisites, delegated scopes, and the
replicated delegation commands.

Messages are built with dnspython's client-side `dns.update.UpdateMessage`, as nsupdate-like clients do,
and the expected operations and response codes are written out by hand (RFC 2136 section 2.3 and 3).
"""

from __future__ import annotations

import dns.message
import dns.name
import dns.rdataset
import dns.rrset
import dns.update
import pytest
from dns_testutil import NOW, seed

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.authorization.zones import VALIDATORS, ZonePolicy
from trustchain.dns.app import (
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNCHANGED,
    DNSApplication,
    DNSResult,
    create_command,
    decode_result,
    delegate_command,
    delegated_update_command,
    undelegate_command,
    update_command,
)
from trustchain.dns.delegation import Delegation, check_scope, name_matches
from trustchain.dns.dynamic_update import (
    Prerequisite,
    Refusal,
    Translated,
    UpdateRefused,
    check_prerequisites,
    translate,
)
from trustchain.dns.zone import AddRecords, DeleteName, DeleteRecords, DeleteRRset, Zone, ZoneUpdate

ORIGIN = "alice.example."
ZONES = {dns.name.from_text(ORIGIN)}
NOERROR, FORMERR, NXDOMAIN, REFUSED, YXDOMAIN, YXRRSET, NXRRSET, NOTAUTH, NOTZONE = 0, 1, 3, 5, 6, 7, 8, 9, 10


def parsed(update: dns.update.UpdateMessage) -> dns.message.Message:
    """What the listener hands to `translate`: the wire form, parsed one RR per RRset."""
    return dns.message.from_wire(update.to_wire(), one_rr_per_rrset=True)


def zone() -> Zone:
    z = Zone.create(ORIGIN, primary_ns="ns1", admin="hostmaster", nameservers=("ns1",))
    z.apply(ZoneUpdate(ORIGIN, (AddRecords("www", "A", 300, ("192.0.2.1",)),
                                AddRecords("_acme-challenge.www", "TXT", 60, ('"old"', '"older"')))))
    return z


# --------------------------------------------------------------------------------------------- translation


def test_adds_and_the_three_deletions_translate_in_order() -> None:
    u = dns.update.UpdateMessage(ORIGIN)
    u.add("_acme-challenge.www", 120, "TXT", '"token-1"', '"token-2"')
    u.delete("_acme-challenge.www", "TXT", '"old"')       # class NONE: one record
    u.delete("mail", "MX")                                 # class ANY, a type: the RRset
    u.delete("tmp")                                        # class ANY, ANY: the name
    u.add("www", 300, "A", "192.0.2.7")
    assert translate(parsed(u), ZONES) == Translated(ORIGIN, (), ZoneUpdate(ORIGIN, (
        AddRecords("_acme-challenge.www.alice.example.", "TXT", 120, ('"token-1"',)),
        AddRecords("_acme-challenge.www.alice.example.", "TXT", 120, ('"token-2"',)),
        DeleteRecords("_acme-challenge.www.alice.example.", "TXT", ('"old"',)),
        DeleteRRset("mail.alice.example.", "MX"),
        DeleteName("tmp.alice.example."),
        AddRecords("www.alice.example.", "A", 300, ("192.0.2.7",)),
    )))


def test_names_inside_record_data_become_absolute() -> None:
    u = dns.update.UpdateMessage(ORIGIN)
    u.add("alias", 60, "CNAME", "www")
    u.add("@", 60, "MX", "10 mail")
    ops = translate(parsed(u), ZONES)
    assert isinstance(ops, Translated)
    assert ops.update.ops == (AddRecords("alias.alice.example.", "CNAME", 60, ("www.alice.example.",)),
                              AddRecords("alice.example.", "MX", 60, ("10 mail.alice.example.",)))


def test_what_rfc_2136_ignores_is_dropped_and_the_apex_keeps_soa_and_ns() -> None:
    u = dns.update.UpdateMessage(ORIGIN)
    u.delete("@", "SOA")
    u.delete("@", "NS")
    u.delete("x", "HINFO")  # a type a TrustChain zone never holds: nothing to delete
    u.delete("@")  # every RRset at the apex: all but SOA and NS
    t = translate(parsed(u), ZONES)
    assert isinstance(t, Translated)
    assert t.update.ops == tuple(DeleteRRset(ORIGIN, rtype) for rtype in (
        "A", "CNAME", "PTR", "MX", "TXT", "AAAA", "SRV", "NAPTR", "DNAME", "SSHFP", "TLSA", "SVCB", "HTTPS", "CAA"))


@pytest.mark.parametrize(("build", "rcode"), [
    (lambda u: u.add("www.other.example.", 60, "A", "192.0.2.1"), NOTZONE),
    (lambda u: u.add("hinfo", 60, "HINFO", '"pc" "unix"'), REFUSED),
    (lambda u: u.add("@", 60, "SOA", "ns1 hostmaster 99 1 1 1 1"), REFUSED),
    (lambda u: u.present("www.other.example."), NOTZONE),
])
def test_refusals(build: object, rcode: int) -> None:
    u = dns.update.UpdateMessage(ORIGIN)
    build(u)  # type: ignore[operator]
    result = translate(parsed(u), ZONES)
    assert isinstance(result, Refusal) and result.rcode == rcode, result


def test_a_zone_this_server_does_not_serve_is_notauth() -> None:
    u = dns.update.UpdateMessage("bob.example.")
    u.add("www", 60, "A", "192.0.2.1")
    result = translate(parsed(u), ZONES)
    assert isinstance(result, Refusal) and result.rcode == NOTAUTH
    sub = dns.update.UpdateMessage("www.alice.example.")  # inside a served zone, but not its apex
    result = translate(parsed(sub), ZONES)
    assert isinstance(result, Refusal) and result.rcode == NOTAUTH


def test_a_prerequisite_with_a_ttl_and_a_deletion_with_a_ttl_are_formerr() -> None:
    u = dns.update.UpdateMessage(ORIGIN)
    u.prerequisite.append(dns.rrset.from_text("www.alice.example.", 30, "IN", "A", "192.0.2.1"))
    result = translate(parsed(u), ZONES)
    assert isinstance(result, Refusal) and result.rcode == FORMERR
    d = dns.update.UpdateMessage(ORIGIN)
    rr = dns.rrset.from_text("www.alice.example.", 30, "IN", "A", "192.0.2.1")
    d.update.append(dns.rrset.RRset(rr.name, rr.rdclass, rr.rdtype, deleting=dns.rdataclass.NONE))
    d.update[-1].add(rr[0], 30)
    result = translate(parsed(d), ZONES)
    assert isinstance(result, Refusal) and result.rcode == FORMERR


def test_prerequisites_translate_to_the_five_kinds() -> None:
    u = dns.update.UpdateMessage(ORIGIN)
    u.present("www")
    u.absent("new")
    u.present("www", "A")
    u.absent("www", "AAAA")
    u.present("_acme-challenge.www", dns.rdataset.from_text("IN", "TXT", 0, '"old"', '"older"'))
    t = translate(parsed(u), ZONES)
    assert isinstance(t, Translated)
    assert t.prerequisites == (
        Prerequisite("name_in_use", "www.alice.example."),
        Prerequisite("name_not_in_use", "new.alice.example."),
        Prerequisite("rrset_exists", "www.alice.example.", "A"),
        Prerequisite("rrset_not_exists", "www.alice.example.", "AAAA"),
        Prerequisite("rrset_equals", "_acme-challenge.www.alice.example.", "TXT", ('"old"', '"older"')),
    )
    assert t.update.ops == ()


# ------------------------------------------------------------------------------------------- prerequisites


@pytest.mark.parametrize(("pre", "rcode"), [
    (Prerequisite("name_in_use", "www.alice.example."), None),
    (Prerequisite("name_in_use", "nothing.alice.example."), NXDOMAIN),
    (Prerequisite("name_not_in_use", "nothing.alice.example."), None),
    (Prerequisite("name_not_in_use", "www.alice.example."), YXDOMAIN),
    (Prerequisite("rrset_exists", "www.alice.example.", "A"), None),
    (Prerequisite("rrset_exists", "www.alice.example.", "AAAA"), NXRRSET),
    (Prerequisite("rrset_not_exists", "www.alice.example.", "SRV"), None),
    (Prerequisite("rrset_not_exists", "www.alice.example.", "A"), YXRRSET),
    (Prerequisite("rrset_equals", "_acme-challenge.www.alice.example.", "TXT", ('"older"', '"old"')), None),
    (Prerequisite("rrset_equals", "_acme-challenge.www.alice.example.", "TXT", ('"old"',)), NXRRSET),
    (Prerequisite("name_in_use", "www.bob.example."), NOTZONE),
    (Prerequisite("rrset_exists", "www.alice.example.", "ANY"), FORMERR),
    (Prerequisite("maybe", "www.alice.example."), FORMERR),
])
def test_prerequisites_hold_or_answer_their_rcode(pre: Prerequisite, rcode: int | None) -> None:
    if rcode is None:
        check_prerequisites(zone(), [pre])
        return
    with pytest.raises(UpdateRefused) as err:
        check_prerequisites(zone(), [pre])
    assert err.value.rcode == rcode


# -------------------------------------------------------------------------------------------------- scope


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("_acme-challenge.alice.example.", "_acme-challenge.alice.example.", True),
    ("_acme-challenge.*.alice.example.", "_acme-challenge.www.alice.example.", True),
    ("_acme-challenge.*.alice.example.", "_acme-challenge.a.b.alice.example.", True),
    ("_acme-challenge.*.alice.example.", "_acme-challenge.alice.example.", False),
    ("_acme-challenge.*.alice.example.", "www.alice.example.", False),
    ("_acme-challenge.*.alice.example.", "x._acme-challenge.www.alice.example.", False),
    ("*.alice.example.", "alice.example.", False),
    ("*.alice.example.", "a.b.alice.example.", True),
    ("home.alice.example.", "HOME.Alice.Example.", True),
])
def test_name_patterns(pattern: str, name: str, matches: bool) -> None:
    assert name_matches(dns.name.from_text(pattern), dns.name.from_text(name)) is matches


ACME = Delegation(ORIGIN, b"v" * 32, "certbot.", ("_acme-challenge.*.alice.example.", "_acme-challenge.alice.example."),
                  ("TXT",), NOW + 3600, b"a" * 32)


@pytest.mark.parametrize(("op", "allowed"), [
    (AddRecords("_acme-challenge.www", "TXT", 60, ('"t"',)), True),
    (DeleteRecords("_acme-challenge.www", "TXT", ('"old"',)), True),
    (DeleteRRset("_acme-challenge", "TXT"), True),
    (AddRecords("www", "TXT", 60, ('"t"',)), False),
    (AddRecords("_acme-challenge.www", "A", 60, ("192.0.2.9",)), False),
    (DeleteRRset("www", "A"), False),               # exists, and is not delegated
    (DeleteRRset("www", "AAAA"), True),             # does not exist: a no-op
    (DeleteName("_acme-challenge.www"), True),      # only TXT lives there
    (DeleteName("www"), False),                     # would remove the A record
])
def test_scope(op: object, allowed: bool) -> None:
    if allowed:
        check_scope(ACME, zone(), [op])  # type: ignore[list-item]
        return
    with pytest.raises(UpdateRefused) as err:
        check_scope(ACME, zone(), [op])  # type: ignore[list-item]
    assert err.value.rcode == REFUSED


def test_delete_records_removes_only_those_and_never_the_last_apex_ns() -> None:
    z = zone()
    assert z.apply(ZoneUpdate(ORIGIN, (DeleteRecords("_acme-challenge.www", "TXT", ('"old"', '"absent"')),)))
    rrset = z.get(dns.name.from_text("_acme-challenge.www.alice.example."), dns.rdatatype.TXT)
    assert rrset is not None and [r.to_text() for r in rrset] == ['"older"']
    assert not z.apply(ZoneUpdate(ORIGIN, (DeleteRecords("@", "NS", ("ns1.alice.example.",)),)))
    assert not z.apply(ZoneUpdate(ORIGIN, (DeleteRecords("nothing", "TXT", ('"x"',)),)))
    assert z.apply(ZoneUpdate(ORIGIN, (DeleteRecords("_acme-challenge.www", "TXT", ('"older"',)),)))
    assert z.node(dns.name.from_text("_acme-challenge.www.alice.example.")) == {}


# ------------------------------------------------------------------------------------- replicated commands

ALICE, MALLORY = b"A" * 32, b"M" * 32
V0, V1 = b"0" * 32, b"1" * 32


def app() -> DNSApplication:
    a = DNSApplication(seed("master"), zone_policy=ZonePolicy(lambda name: False, ("example",)),
                       validator_accounts=frozenset({V0, V1}), validator_domain="nodes.example.")
    assert run(a, (ALICE, create_command(ORIGIN, primary_ns="ns1", admin="hostmaster", nameservers=["ns1"])),
               (ALICE, update_command(ZoneUpdate(ORIGIN, (AddRecords("www", "A", 300, ("192.0.2.1",)),)))))[1].ok
    return a


def run(a: DNSApplication, *ops: tuple[bytes, bytes], t: int = NOW) -> list[DNSResult]:
    results = a.execute([Operation(acct, i, p) for i, (acct, p) in enumerate(ops)], ExecutionContext(1, t * 10**6))
    return [decode_result(r) for r in results]


def grant(account: bytes = ALICE, delegate: bytes = V0, **kw: object) -> tuple[bytes, bytes]:
    args: dict[str, object] = {"names": ["_acme-challenge", "_acme-challenge.*"], "types": ["TXT"],
                               "expires_s": NOW + 3600}
    args.update(kw)
    return account, delegate_command(ORIGIN, delegate, "certbot.alice.example.", **args)  # type: ignore[arg-type]


def challenge(value: str, *pre: Prerequisite) -> bytes:
    return delegated_update_command("certbot.alice.example.", pre, ZoneUpdate(ORIGIN, (
        AddRecords("_acme-challenge.www", "TXT", 60, (value,)),)))


def txt(a: DNSApplication) -> list[str]:
    rrset = a.zones[dns.name.from_text(ORIGIN)].zone.get(dns.name.from_text("_acme-challenge.www.alice.example."),
                                                         dns.rdatatype.TXT)
    return sorted(r.to_text() for r in rrset) if rrset is not None else []


def test_only_the_owner_delegates_only_to_a_validator_and_only_the_delegate_uses_it() -> None:
    a = app()
    refused = run(a, grant(MALLORY), grant(delegate=MALLORY), grant(expires_s=NOW - 1),
                  grant(expires_s=NOW + 10**9), grant(types=["SOA"]), grant(names=["www.bob.example."]))
    assert [r.detail.split(":")[0] for r in refused] == [
        "delegate.authorization", "delegate.delegate", "delegate.expires_s", "delegate.expires_s",
        "delegate.types[0]", "delegate.names[0]"]
    assert [r.status for r in run(a, grant())] == [STATUS_OK]
    # another validator, the owner herself, and a non-validator cannot use V0's delegation
    for account in (V1, ALICE, MALLORY):
        (r,) = run(a, (account, challenge('"x"')))
        assert (r.status, r.rcode) == (STATUS_ERROR, REFUSED) and txt(a) == [], r
    (r,) = run(a, (V0, challenge('"token"')))
    assert (r.status, r.rcode, r.serial) == (STATUS_OK, NOERROR, 3) and txt(a) == ['"token"']


def test_out_of_scope_prerequisites_expiry_and_revocation() -> None:
    a = app()
    run(a, grant())
    www_a = delegated_update_command("certbot.alice.example.", (), ZoneUpdate(ORIGIN, (
        AddRecords("www", "A", 60, ("203.0.113.66",)),)))
    (r,) = run(a, (V0, www_a))
    assert (r.status, r.rcode) == (STATUS_ERROR, REFUSED) and r.detail.startswith("ops[0]")
    (r,) = run(a, (V0, challenge('"t"', Prerequisite("rrset_exists", "_acme-challenge.www.alice.example.", "TXT"))))
    assert (r.status, r.rcode) == (STATUS_ERROR, NXRRSET) and txt(a) == []
    (r,) = run(a, (V0, challenge('"t"', Prerequisite("name_in_use", "www.alice.example."))))
    assert (r.status, r.rcode) == (STATUS_OK, NOERROR) and txt(a) == ['"t"']
    (r,) = run(a, (V0, challenge('"t"')))
    assert r.status == STATUS_UNCHANGED
    (r,) = run(a, (V0, challenge('"late"')), t=NOW + 3600)
    assert (r.status, r.rcode) == (STATUS_ERROR, REFUSED) and txt(a) == ['"t"']
    run(a, grant())
    (u,) = run(a, (ALICE, undelegate_command(ORIGIN, V0, "CERTBOT.alice.example.")))
    assert u.status == STATUS_OK
    (r,) = run(a, (V0, challenge('"after"')))
    assert (r.status, r.rcode) == (STATUS_ERROR, REFUSED) and txt(a) == ['"t"']


def test_the_validators_zone_is_never_delegated() -> None:
    a = app()
    nodes = create_command("nodes.example.", primary_ns="ns1", admin="hostmaster", nameservers=["ns1"])
    assert run(a, (VALIDATORS, nodes))[0].ok  # created by a quorum of validator votes
    for actor in (V0, VALIDATORS):
        (r,) = run(a, (actor, delegate_command("nodes.example.", V1, "k.", names=["*"], types=["A"],
                                               expires_s=NOW + 60)))
        assert r.status == STATUS_ERROR and r.detail.startswith("delegate."), r


def test_delegations_survive_snapshot_and_restore() -> None:
    a = app()
    run(a, grant())
    b = DNSApplication(seed("master"), zone_policy=ZonePolicy(lambda name: False, ("example",)),
                       validator_accounts=frozenset({V0, V1}), validator_domain="nodes.example.")
    b.restore(a.snapshot())
    assert b.snapshot() == a.snapshot()
    (r,) = run(b, (V0, challenge('"token"')))
    assert r.status == STATUS_OK and txt(b) == ['"token"']
