"""Zone creation policy and outside-DNS validation by a validator quorum, at every cluster size."""

from __future__ import annotations

import dns.name
import pytest

from trustchain.authorization import ExternalValidations, ValidationLimits, ZonePolicy, default_public_suffixes
from trustchain.authorization.observations import FAILED, VALIDATED, Decided, ValidationConfigError

ALICE, MALLORY = b"A" * 32, b"M" * 32


def _n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


@pytest.fixture(scope="module")
def policy() -> ZonePolicy:
    return ZonePolicy(default_public_suffixes())


@pytest.mark.parametrize("origin", [".", "com.", "test.", "co.uk.", "github.io."])
def test_root_tlds_and_public_suffixes_are_never_created(policy: ZonePolicy, origin: str) -> None:
    decision = policy.may_create(_n(origin), ALICE, {})
    assert not decision.allowed and not decision.needs_validation and decision.reason.startswith("origin:")


def test_a_zone_inside_someone_elses_zone_is_refused(policy: ZonePolicy) -> None:
    owners = {_n("alice-corp.test."): ALICE}
    for origin in ("_acme-challenge.pay.alice-corp.test.", "pay.alice-corp.test."):
        assert not policy.may_create(_n(origin), MALLORY, owners).allowed
        assert policy.may_create(_n(origin), ALICE, owners).allowed
    assert policy.may_update(_n("alice-corp.test."), MALLORY, owners) is not None
    assert policy.may_update(_n("alice-corp.test."), ALICE, owners) is None


def test_an_unserved_registrable_name_needs_outside_validation(policy: ZonePolicy) -> None:
    decision = policy.may_create(_n("victim-bank.org."), MALLORY, {})
    assert not decision.allowed and decision.needs_validation


@pytest.mark.parametrize("n", range(4, 14))
def test_f_byzantine_validators_can_neither_validate_alone_nor_block(n: int) -> None:
    f = (n - 1) // 3
    threshold = (n + f + 2) // 2  # the consensus quorum, which lies in (f, n - f]
    assert f < threshold <= n - f
    # f liars say "seen" for a name nobody controls: never validated
    vals = ExternalValidations(n, threshold)
    opened = vals.open(MALLORY, "victim-bank.org", "_acme-challenge.victim-bank.org", "tok", 0)
    assert not isinstance(opened, str)
    assert "not published" in str(vals.observe(0, opened.validation_id, True, 1))
    assert not isinstance(vals.ready(MALLORY, opened.validation_id, 1), str)
    decisions = [vals.observe(i, opened.validation_id, True, 1) for i in range(f)]
    decisions += [vals.observe(i, opened.validation_id, False, 1) for i in range(f, n)]
    final = [d for d in decisions if isinstance(d, Decided)]
    assert final and final[0].outcome == FAILED and not vals.validated(MALLORY, "victim-bank.org", 2)
    # f liars say "not seen" for a name Alice controls: validated by the honest ones
    vals = ExternalValidations(n, threshold)
    opened = vals.open(ALICE, "alice-corp.org", "_acme-challenge.alice-corp.org", "tok", 0)
    assert not isinstance(opened, str)
    assert isinstance(vals.ready(MALLORY, opened.validation_id, 1), str)  # only the account itself
    assert not isinstance(vals.ready(ALICE, opened.validation_id, 1), str)
    decisions = [vals.observe(i, opened.validation_id, False, 1) for i in range(f)]
    decisions += [vals.observe(i, opened.validation_id, True, 1) for i in range(f, n)]
    final = [d for d in decisions if isinstance(d, Decided)]
    assert final and final[0].outcome == VALIDATED and vals.validated(ALICE, "alice-corp.org", 2)
    assert not vals.validated(MALLORY, "alice-corp.org", 2)


def test_thresholds_outside_f_to_n_minus_f_are_refused() -> None:
    with pytest.raises(ValidationConfigError, match="threshold"):
        ExternalValidations(5, 1)
    with pytest.raises(ValidationConfigError, match="threshold"):
        ExternalValidations(5, 5)


def test_votes_are_final_validations_expire_and_accounts_are_bounded() -> None:
    limits = ValidationLimits(open_ttl_us=100, valid_for_us=1000, max_open_per_account=2, max_open=3)
    vals = ExternalValidations(4, 3, limits)
    a = vals.open(ALICE, "a.org", "_acme-challenge.a.org", "t", 0)
    b = vals.open(ALICE, "b.org", "_acme-challenge.b.org", "t", 0)
    assert not isinstance(a, str) and not isinstance(b, str)
    assert isinstance(vals.open(ALICE, "c.org", "_acme-challenge.c.org", "t", 0), str)
    assert not isinstance(vals.open(MALLORY, "m.org", "_acme-challenge.m.org", "t", 0), str)
    assert isinstance(vals.open(b"B" * 32, "d.org", "_acme-challenge.d.org", "t", 0), str)
    assert not isinstance(vals.ready(ALICE, a.validation_id, 1), str)
    assert vals.observe(0, a.validation_id, True, 1) is None
    assert vals.observe(0, a.validation_id, False, 1) == "validator: already observed this validation"
    assert vals.state_of(b.validation_id) == "open"
    vals.expire(200)
    assert vals.state_of(b.validation_id) == FAILED
    copy = ExternalValidations(4, 3, limits)
    copy.restore(vals.snapshot())
    assert copy.snapshot() == vals.snapshot()


def test_a_registry_namespace_is_first_come_first_served_one_level_down() -> None:
    policy = ZonePolicy(default_public_suffixes(), ("example",))
    assert policy.may_create(_n("alice.example."), ALICE, {}).allowed
    assert not policy.may_create(_n("example."), ALICE, {}).allowed  # the namespace itself: never
    owners = {_n("alice.example."): ALICE}
    assert not policy.may_create(_n("alice.example."), MALLORY, owners).allowed
    assert not policy.may_create(_n("pay.alice.example."), MALLORY, owners).allowed
    assert policy.may_create(_n("victim.org."), MALLORY, {}).needs_validation  # outside the namespace
