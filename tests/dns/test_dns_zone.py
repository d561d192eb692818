from __future__ import annotations

import dns.name
import dns.rdatatype
import pytest
from dns_testutil import ORIGIN, make_zone
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.dns.app import UpdateZone
from trustchain.dns.zone import (
    AddRecords,
    DeleteName,
    DeleteRRset,
    RecordOp,
    ReplaceRRset,
    Zone,
    ZoneUpdate,
    ZoneUpdateError,
)
from trustchain.encoding import decode, encode

T = dns.rdatatype.RdataType


def n(text: str) -> dns.name.Name:
    return dns.name.from_text(text, origin=dns.name.from_text(ORIGIN))


def upd(*ops: AddRecords | ReplaceRRset | DeleteRRset | DeleteName) -> ZoneUpdate:
    return ZoneUpdate(ORIGIN, ops)


def test_create_has_soa_and_ns() -> None:
    zone = Zone.create(ORIGIN, primary_ns="ns1", admin="hostmaster", nameservers=("ns1", "ns2"))
    assert zone.serial == 1
    ns = zone.get(n("@"), T.NS)
    assert ns is not None and sorted(r.to_text() for r in ns) == ["ns1.tc.example.", "ns2.tc.example."]
    assert str(zone.soa.rname) == "hostmaster.tc.example."


def test_add_replace_delete_and_serial(zone: Zone) -> None:
    serial = zone.serial
    assert zone.apply(upd(AddRecords("www", "A", 300, ("192.0.2.3",))))
    www = zone.get(n("www"), T.A)
    assert www is not None and {r.to_text() for r in www} == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}
    assert zone.serial == serial + 1
    assert zone.apply(upd(ReplaceRRset("www", "A", 120, ("198.51.100.7",))))
    www = zone.get(n("www"), T.A)
    assert www is not None and [r.to_text() for r in www] == ["198.51.100.7"] and www.ttl == 120
    assert zone.apply(upd(DeleteRRset("www", "A")))
    assert zone.get(n("www"), T.A) is None
    assert zone.get(n("www"), T.AAAA) is not None
    assert zone.apply(upd(DeleteName("www")))
    assert zone.node(n("www")) == {}
    assert zone.serial == serial + 4


def test_noop_update_keeps_serial(zone: Zone) -> None:
    serial = zone.serial
    assert not zone.apply(upd(AddRecords("www", "A", 300, ("192.0.2.1",))))  # already present
    assert not zone.apply(upd(DeleteRRset("nothing", "TXT")))
    assert zone.serial == serial


def test_serial_wraps_per_rfc1982() -> None:
    zone = Zone.create(ORIGIN, primary_ns="ns1", admin="h", nameservers=("ns1",), serial=2**32 - 1)
    zone.apply(upd(AddRecords("a", "A", 1, ("192.0.2.1",))))
    assert zone.serial == 0


def test_names_and_data_are_case_insensitive(zone: Zone) -> None:
    zone.apply(upd(AddRecords("MiXeD.Tc.Example.", "txt", 60, ('"x"',))))
    assert zone.get(n("mixed"), T.TXT) is not None
    assert b"MiXeD" not in zone.snapshot()


@pytest.mark.parametrize(
    ("op", "field", "reason"),
    [
        (AddRecords("www", "CNAME", 60, ("mail",)), "ops[0].type", "beside other data"),
        (AddRecords("alias", "TXT", 60, ('"x"',)), "ops[0].type", "beside its CNAME"),
        (AddRecords("@", "CNAME", 60, ("www",)), "ops[0].type", "beside other data"),
        (AddRecords("alias", "CNAME", 60, ("mail",)), "ops[0].values", "exactly one record"),
        (AddRecords("x.other.example.", "A", 60, ("192.0.2.1",)), "ops[0].name", "out of zone"),
        (AddRecords("a..b", "A", 60, ("192.0.2.1",)), "ops[0].name", "malformed name"),
        (AddRecords("bad name", "A", 60, ("192.0.2.1",)), "ops[0].name", "malformed name"),
        (AddRecords("x" * 64, "A", 60, ("192.0.2.1",)), "ops[0].name", "malformed name"),
        (AddRecords("a.*", "A", 60, ("192.0.2.1",)), "ops[0].name", "leftmost label"),
        (AddRecords("", "A", 60, ("192.0.2.1",)), "ops[0].name", "malformed name"),
        (AddRecords("t", "TXT", 60, ('"' + "a" * 256 + '"',)), "ops[0].values[0]", "TXT string over 255"),
        (AddRecords("t", "A", -1, ("192.0.2.1",)), "ops[0].ttl", "bad TTL"),
        (AddRecords("t", "A", 2**31, ("192.0.2.1",)), "ops[0].ttl", "bad TTL"),
        (AddRecords("t", "A", True, ("192.0.2.1",)), "ops[0].ttl", "bad TTL"),
        (AddRecords("t", "A", 60, ("192.0.2.256",)), "ops[0].values[0]", "bad IP address"),
        (AddRecords("t", "A", 60, ("2001:db8::1",)), "ops[0].values[0]", "bad IP address"),
        (AddRecords("t", "AAAA", 60, ("2001:db8::g",)), "ops[0].values[0]", "bad IP address"),
        (AddRecords("t", "HINFO", 60, ('"pc" "unix"',)), "ops[0].type", "unknown type"),
        (AddRecords("t", "BOGUS", 60, ("x",)), "ops[0].type", "unknown type"),
        (AddRecords("t", "SOA", 60, ("x",)), "ops[0].type", "unknown type"),
        (AddRecords("t", "RRSIG", 60, ("x",)), "ops[0].type", "except in a presigned zone"),
        (AddRecords("t", "DS", 60, ("1 13 2 " + "00" * 32,)), "zone[t.tc.example.]", "DS only at a delegation"),
        (AddRecords("t", "MX", 60, ("mail",)), "ops[0].values[0]", "bad MX data"),
        (AddRecords("t", "CAA", 60, ('0 is$ue "x"',)), "ops[0].values[0]", "bad CAA data"),
        (AddRecords("t", "A", 60, ()), "ops[0].values", "non-empty"),
        (DeleteRRset("@", "NS"), "ops[0].type", "apex NS"),
        (DeleteName("@"), "ops[0].name", "apex"),
    ],
)
def test_rejected_updates_name_field_and_change_nothing(
    zone: Zone, op: AddRecords | DeleteRRset | DeleteName, field: str, reason: str
) -> None:
    before = zone.snapshot()
    # a valid op first proves atomicity: it must not survive the later rejection
    with pytest.raises(ZoneUpdateError) as info:
        zone.apply(upd(AddRecords("fresh", "A", 60, ("192.0.2.9",)), op))
    err = info.value
    assert err.field == field.replace("ops[0]", "ops[1]")
    assert reason in err.reason
    assert zone.snapshot() == before


def test_wrong_origin_rejected(zone: Zone) -> None:
    with pytest.raises(ZoneUpdateError, match="does not match"):
        zone.apply(ZoneUpdate("other.example.", (AddRecords("a", "A", 1, ("192.0.2.1",)),)))


def test_update_wire_and_json_forms_roundtrip() -> None:
    u = upd(
        AddRecords("a", "TXT", 5, ('"é"',)),
        ReplaceRRset("b", "A", 6, ("192.0.2.1",)),
        DeleteRRset("c", "MX"),
        DeleteName("d"),
    )
    records = u.records()
    assert [r.kind for r in records] == ["add", "replace", "delete_rrset", "delete_name"]
    assert decode(UpdateZone, encode(UpdateZone(ORIGIN, records))).ops == records
    assert ZoneUpdate.from_records(ORIGIN, records) == u
    doc = {"origin": ORIGIN, "ops": [
        {"op": "add", "name": "a", "type": "TXT", "ttl": 5, "values": ['"é"']},
        {"op": "replace", "name": "b", "type": "A", "ttl": 6, "values": ["192.0.2.1"]},
        {"op": "delete_rrset", "name": "c", "type": "MX"},
        {"op": "delete_name", "name": "d"},
    ]}
    assert ZoneUpdate.from_json(doc) == u


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "update"),
        ({"origin": 1, "ops": []}, "update.origin"),
        ({"origin": "x.", "ops": {}}, "update.ops"),
        ({"origin": "x.", "ops": [], "extra": 1}, "update.extra"),
        ({"origin": "x.", "ops": [{"op": "nope"}]}, "ops[0].op"),
        ({"origin": "x.", "ops": [{"op": ["add"]}]}, "ops[0].op"),
        ({"origin": "x.", "ops": [{"op": "add", "name": "a"}]}, "ops[0].type"),
        ({"origin": "x.", "ops": [{"op": "delete_name", "name": "a", "type": "A"}]}, "ops[0].type"),
        ({"origin": "x.", "ops": [{"op": "add", "name": 5, "type": "A", "ttl": 1, "values": []}]}, "ops[0].name"),
        ({"origin": "x.", "ops": [{"op": "add", "name": "a", "type": "A", "ttl": -1, "values": []}]}, "ops[0].ttl"),
        ({"origin": "x.", "ops": [{"op": "add", "name": "a", "type": "A", "ttl": True, "values": []}]},
         "ops[0].ttl"),
        ({"origin": "x.", "ops": [{"op": "add", "name": "a", "type": "A", "ttl": 1, "values": "1.2.3.4"}]},
         "ops[0].values"),
        ({"origin": "x.", "ops": [{"op": "add", "name": "a", "type": "A", "ttl": 1, "values": [1]}]},
         "ops[0].values"),
    ],
)
def test_update_json_errors_name_the_field(doc: object, field: str) -> None:
    with pytest.raises(ZoneUpdateError) as info:
        ZoneUpdate.from_json(doc)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (RecordOp("nope", "a"), "ops[0].kind"),
        (RecordOp("delete_name", "a", "A"), "ops[0].type"),
        (RecordOp("delete_rrset", "a", "A", 5), "ops[0].ttl"),
        (RecordOp("delete_rrset", "a", "A", 0, ("x",)), "ops[0].values"),
    ],
)
def test_update_records_are_strict(record: RecordOp, field: str) -> None:
    with pytest.raises(ZoneUpdateError) as info:
        ZoneUpdate.from_records(ORIGIN, (record,))
    assert info.value.field == field


def test_records_refuse_what_the_wire_cannot_carry() -> None:
    for op, field in ((AddRecords("a", "A", -1, ("192.0.2.1",)), "ops[0].ttl"),
                      (AddRecords("a", "A", 2**64, ("192.0.2.1",)), "ops[0].ttl"),
                      (DeleteRRset("a", None), "ops[0].type"),  # type: ignore[arg-type]
                      (ReplaceRRset("a", "A", 1, ("192.0.2.1", 7)), "ops[0].values")):  # type: ignore[arg-type]
        with pytest.raises(ZoneUpdateError) as info:
            upd(op).records()
        assert info.value.field == field


def test_snapshot_roundtrip_digest_and_determinism(zone: Zone) -> None:
    restored = Zone.restore(zone.snapshot())
    assert restored.snapshot() == zone.snapshot()
    assert restored.digest() == zone.digest()
    assert make_zone().digest() == zone.digest()  # a second replica gets the same bytes
    zone.apply(upd(AddRecords("new", "A", 1, ("192.0.2.1",))))
    assert restored.digest() != zone.digest()


def test_restore_rejects_bad_snapshots(zone: Zone) -> None:
    good = zone.snapshot().decode()
    with pytest.raises(ZoneUpdateError):
        Zone.restore(b"garbage")
    with pytest.raises(ZoneUpdateError):
        Zone.restore((good + "www.tc.example. 60 IN CNAME mail.tc.example.\n").encode())
    with pytest.raises(ZoneUpdateError):
        Zone.restore((good + "x.tc.example. 60 IN HINFO pc unix\n").encode())


def test_rdata_order_independent_of_insertion() -> None:
    a = make_zone()
    b = make_zone()
    a.apply(upd(AddRecords("m", "A", 60, ("192.0.2.9", "192.0.2.1"))))
    b.apply(upd(AddRecords("m", "A", 60, ("192.0.2.1",))))
    b.apply(upd(AddRecords("m", "A", 60, ("192.0.2.9",))))
    assert a.get(n("m"), T.A) == b.get(n("m"), T.A)
    assert [r.to_text() for r in a.get(n("m"), T.A) or []] == ["192.0.2.1", "192.0.2.9"]


_label = st.text(alphabet="abcxyz-_0", min_size=1, max_size=5)
_op = st.one_of(
    st.builds(
        AddRecords,
        _label,
        st.sampled_from(["A", "TXT", "CNAME", "MX", "NS", "X"]),
        st.integers(-5, 400),
        st.tuples(st.sampled_from(["192.0.2.1", '"t"', "www", "10 mail", "::1"])),
    ),
    st.builds(DeleteRRset, _label, st.sampled_from(["A", "TXT", "CNAME"])),
    st.builds(DeleteName, _label),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_op, min_size=1, max_size=4), max_size=6))
def test_replicas_converge_and_rejections_are_atomic(batches: list[list[AddRecords]]) -> None:
    a, b = make_zone(), make_zone()
    for ops in batches:
        update = upd(*ops)
        before = a.snapshot()
        results = []
        for replica in (a, b):
            try:
                results.append(replica.apply(update))
            except ZoneUpdateError as exc:
                results.append(exc.field)
        assert results[0] == results[1]
        if isinstance(results[0], str):
            assert a.snapshot() == before
        assert a.snapshot() == b.snapshot()
        assert Zone.restore(a.snapshot()).snapshot() == a.snapshot()
