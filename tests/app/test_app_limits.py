"""The replicated resource policy: parsing genesis `limits`, the storage bound it implies, and the
key-value limits at their boundary."""

from __future__ import annotations

import pytest

from trustchain.accounts import AccountLimits
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.app.kvstore import KVResult, KVStore, decode_result, delete, put
from trustchain.app.limits import KVLimits, LimitsError, ResourceLimits, limits_from_json
from trustchain.ct.quota import CTQuota
from trustchain.dns.limits import ZoneLimits

MiB, GiB = 1 << 20, 1 << 30


def test_absent_or_empty_limits_are_the_defaults_and_sections_override_field_by_field() -> None:
    assert limits_from_json(None) == ResourceLimits() == limits_from_json({})
    limits = limits_from_json({"dns": {"max_zone_bytes": 4096}, "ct": {"submissions_per_window": 5},
                               "accounts": {"max_accounts": 10}, "kv": {"max_total_bytes": 100}})
    assert limits.dns == ZoneLimits(max_zone_bytes=4096)
    assert limits.ct == CTQuota(submissions_per_window=5)
    assert limits.accounts == AccountLimits(max_accounts=10)
    assert limits.kv == KVLimits(max_total_bytes=100)


@pytest.mark.parametrize(("doc", "field"), [
    ([], "limits"),
    ({"disk": {}}, "limits.disk"),
    ({"dns": []}, "limits.dns"),
    ({"dns": {"max_records": 5}}, "limits.dns.max_records"),
    ({"kv": {"max_account_bytes": 0}}, "limits.kv.max_account_bytes"),
    ({"ct": {"window_us": "1h"}}, "limits.ct.window_us"),
    ({"accounts": {"max_accounts": True}}, "limits.accounts.max_accounts"),
])
def test_a_bad_limits_document_names_the_field(doc: object, field: str) -> None:
    with pytest.raises(LimitsError) as info:
        limits_from_json(doc)
    assert str(info.value).startswith(field + ":"), info.value


def test_default_storage_bound_is_the_global_caps() -> None:
    bound = ResourceLimits().storage_bound()
    # 100,000 accounts x 4 MiB of key-value data would be 390 GiB: the 1 GiB global cap binds
    assert (bound.kv, bound.dns, bound.ct) == (1 * GiB, 256 * MiB, 1 * GiB)
    assert bound.total == 2 * GiB + 256 * MiB
    # 1,000 registrations an hour, each bringing 4 MiB key-value + 4 MiB zones + 16 MiB CT of quota
    assert ResourceLimits().growth_per_window() == 1000 * 24 * MiB


def test_storage_bound_is_accounts_times_quota_when_that_is_smaller() -> None:
    limits = ResourceLimits(accounts=AccountLimits(max_accounts=10))
    bound = limits.storage_bound()
    assert (bound.kv, bound.dns, bound.ct) == (40 * MiB, 40 * MiB, 160 * MiB)


def _kv(store: KVStore, account: bytes, payload: bytes) -> KVResult:
    return decode_result(store.execute([Operation(account, 1, payload)], ExecutionContext(1, 0))[0])


def test_kv_account_bytes_exactly_at_the_cap_and_one_more_refused() -> None:
    store = KVStore(quota_bytes=100, total_bytes=1000)
    assert _kv(store, b"alice", put(b"k1", b"x" * 48)).ok  # 2 + 48 bytes
    assert _kv(store, b"alice", put(b"k2", b"x" * 48)).ok  # exactly 100
    refused = _kv(store, b"alice", put(b"k3", b""))
    assert not refused.ok and refused.detail.startswith("limits.kv.max_account_bytes: "), refused
    assert _kv(store, b"alice", put(b"k2", b"x" * 10)).ok  # shrinking is always allowed
    assert _kv(store, b"bob", put(b"b1", b"x" * 98)).ok


def test_kv_total_bytes_bound_every_account_together() -> None:
    store = KVStore(quota_bytes=100, total_bytes=150)
    assert _kv(store, b"alice", put(b"a", b"x" * 99)).ok
    assert _kv(store, b"bob", put(b"b", b"x" * 49)).ok  # exactly 150 in all
    refused = _kv(store, b"carol", put(b"c", b""))
    assert not refused.ok and refused.detail.startswith("limits.kv.max_total_bytes: "), refused
    assert _kv(store, b"alice", delete(b"a")).ok
    assert _kv(store, b"carol", put(b"c", b"x" * 99)).ok
    copy = KVStore(quota_bytes=100, total_bytes=150)
    copy.restore(store.snapshot())
    assert copy.used == store.used == 150
    assert not _kv(copy, b"dave", put(b"d", b"")).ok
