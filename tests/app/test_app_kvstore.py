"""KVStore: typed commands and results, one handler per op, and rejections that change nothing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.app.kvstore import (
    MAX_KEY,
    MAX_VALUE,
    OP_APPEND,
    OP_DELETE,
    OP_GET,
    OP_PUT,
    OPS,
    STATUS_ERROR,
    STATUS_NOT_FOUND,
    STATUS_OK,
    KVCommand,
    KVResult,
    KVStore,
    append,
    decode_result,
    delete,
    get,
    put,
)
from trustchain.encoding import decode, encode


def run(store: KVStore, *payloads: bytes) -> list[KVResult]:
    ops = [Operation(b"client", i, p) for i, p in enumerate(payloads)]
    return [decode_result(r) for r in store.execute(ops, ExecutionContext(1, 0))]


def test_each_op_round_trips_through_the_wire() -> None:
    for payload, cmd in ((put(b"k", b"v"), KVCommand(OP_PUT, b"k", b"v")), (get(b"k"), KVCommand(OP_GET, b"k")),
                         (delete(b"k"), KVCommand(OP_DELETE, b"k")),
                         (append(b"k", b"w"), KVCommand(OP_APPEND, b"k", b"w"))):
        assert decode(KVCommand, payload) == cmd and encode(cmd) == payload
    assert {decode(KVCommand, p).op for p in (put(b"", b""), get(b""), delete(b""), append(b"", b""))} == set(OPS)
    result = KVResult(STATUS_OK, "", b"value", 5)
    assert decode_result(encode(result)) == result


def test_results_carry_typed_fields() -> None:
    store = KVStore()
    assert run(store, put(b"k", b"ab"), append(b"k", b"cd"), get(b"k"), delete(b"k"), get(b"k"), delete(b"k")) == [
        KVResult(STATUS_OK, size=2),
        KVResult(STATUS_OK, size=4),
        KVResult(STATUS_OK, value=b"abcd", size=4),
        KVResult(STATUS_OK),
        KVResult(STATUS_NOT_FOUND),
        KVResult(STATUS_NOT_FOUND),
    ]
    assert KVResult(STATUS_NOT_FOUND).ok and not KVResult(STATUS_ERROR).ok
    assert store.data == {} and store.applied == 6


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b"\x00\x00", "command: malformed (KVCommand.op: "),
        (put(b"k", b"v") + b"\x00", "command: malformed (KVCommand: 1 trailing bytes)"),
        (encode(KVCommand("drop", b"k")), "op: must be one of put, get, delete, append, got 'drop'"),
        (put(b"x" * (MAX_KEY + 1), b"v"), f"key: longer than {MAX_KEY} bytes"),
        (put(b"k", b"v" * (MAX_VALUE + 1)), f"value: longer than {MAX_VALUE} bytes"),
        (append(b"k", b"v" * MAX_VALUE), f"value: longer than {MAX_VALUE} bytes"),
    ],
)
def test_rejections_name_the_field_and_change_nothing(payload: bytes, detail: str) -> None:
    store = KVStore()
    run(store, put(b"k", b"old"))
    before = dict(store.data)
    [result] = run(store, payload)
    assert result.status == STATUS_ERROR and result.detail.startswith(detail), result
    assert store.data == before


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=5))
def test_garbage_never_raises(payloads: list[bytes]) -> None:
    store = KVStore()
    results = run(store, *payloads)
    assert len(results) == len(payloads)
    assert all(r.status in (STATUS_OK, STATUS_NOT_FOUND, STATUS_ERROR) for r in results)
