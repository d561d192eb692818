"""The dissemination overlay keeps every node's degree bounded however many observers join, and gives
every observer parents in independent trees rooted at the validators."""

from __future__ import annotations

from collections import deque

import pytest

from trustchain.consensus.overlay import build_overlay, overlay_salt

VALIDATORS = [f"v{i}" for i in range(7)]
SALT = overlay_salt(bytes(range(32)))  # a genesis digest


def _observers(count: int) -> list[str]:
    return [f"o{i}" for i in range(count)]


@pytest.mark.parametrize("count", [50, 2000])
def test_degrees_stay_bounded(count: int) -> None:
    overlay = build_overlay(VALIDATORS, _observers(count), SALT, trees=3, fanout=4, validator_fanout=2)
    for name in _observers(count):
        assert 1 <= len(overlay[name].parents) <= 3
        assert len(overlay[name].children) <= 12
    for v in VALIDATORS:
        assert overlay[v].parents == ()
        assert len(overlay[v].children) <= 6


def test_most_observers_have_three_distinct_parents() -> None:
    overlay = build_overlay(VALIDATORS, _observers(3000), SALT)
    distinct = sum(1 for o in _observers(3000) if len(overlay[o].parents) == 3)
    assert distinct > 0.98 * 3000


def test_every_observer_is_reached_from_the_validators() -> None:
    overlay = build_overlay(VALIDATORS, _observers(1000), SALT, trees=2, fanout=3)
    seen = set(VALIDATORS)
    todo = deque(VALIDATORS)
    while todo:
        for child in overlay[todo.popleft()].children:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    assert seen == set(VALIDATORS) | set(_observers(1000))


def test_another_salt_gives_other_parents() -> None:
    a = build_overlay(VALIDATORS, _observers(200), overlay_salt(b"genesis one digest."))
    b = build_overlay(VALIDATORS, _observers(200), overlay_salt(b"genesis two digest."))
    assert sum(a[o].parents != b[o].parents for o in _observers(200)) > 150


def test_names_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        build_overlay(["v0"], ["v0"], SALT)


def test_salt_must_come_from_a_genesis_digest() -> None:
    """A short constant is not a salt nobody could choose: only overlay_salt's 32-byte output is taken."""
    with pytest.raises(ValueError, match="salt"):
        build_overlay(VALIDATORS, _observers(10), b"salt")
    with pytest.raises(ValueError, match="genesis digest"):
        overlay_salt(b"short")
    assert overlay_salt(bytes(32)) != overlay_salt(bytes([1]) * 32)
