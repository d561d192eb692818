"""The dissemination overlay: who forwards committed batches to whom, with bounded degree.

`trees` independent trees span the observers. In each, the observers are ordered by a salted hash of
their name (a different order per tree); the first `validator_fanout * len(validators)` are fed
directly by a validator, each later one by the observer `fanout` places up. Every observer so has
exactly `trees` parents, each from an independent random order, and forwards to at most
`trees * fanout` children; every validator feeds `trees * validator_fanout` observers, however many
observers there are. Depth grows as log_fanout(observers).

A node never depends on one neighbour: its parents in different trees are unrelated (a Byzantine
parent withholds only one of `trees` copies), the roots of each tree are spread over all validators,
and an observer that stops making progress pulls from peers drawn at random from the validators and
from all observers (`observer`), so a node eclipsed in every tree still catches up. The salt must
not be under an attacker's control (a genesis or checkpoint digest), or a Byzantine node could grind
its name to sit above a victim in every tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import blake3

__all__ = ["Neighbours", "build_overlay"]


@dataclass(frozen=True)
class Neighbours:
    parents: tuple[str, ...]
    children: tuple[str, ...]


def _order(observers: Sequence[str], salt: bytes, tree: int) -> list[str]:
    prefix = salt + b"/tree/%d/" % tree
    return sorted(observers, key=lambda name: blake3.blake3(prefix + name.encode()).digest())


def build_overlay(validators: Sequence[str], observers: Sequence[str], salt: bytes, trees: int = 3,
                  fanout: int = 4, validator_fanout: int = 4) -> dict[str, Neighbours]:
    """Every node's parents and children (validators have no parents)."""
    if trees < 1 or fanout < 1 or validator_fanout < 1:
        raise ValueError("trees, fanout and validator_fanout must be >= 1")
    if not validators:
        raise ValueError("an overlay needs validators")
    names = [*validators, *observers]
    if len(set(names)) != len(names):
        raise ValueError("node names must be distinct across validators and observers")
    parents: dict[str, list[str]] = {n: [] for n in names}
    children: dict[str, list[str]] = {n: [] for n in names}
    roots = validator_fanout * len(validators)
    for tree in range(trees):
        order = _order(observers, salt, tree)
        for pos, name in enumerate(order):
            parent = validators[(pos + tree) % len(validators)] if pos < roots else order[(pos - roots) // fanout]
            parents[name].append(parent)
            children[parent].append(name)
    return {n: Neighbours(tuple(dict.fromkeys(parents[n])), tuple(dict.fromkeys(children[n]))) for n in names}
