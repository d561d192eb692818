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
its name to sit above a victim in every tree. `overlay_salt` derives it from the genesis' digest (the
cluster id), which every node has and nobody can choose after the fact; `build_overlay` refuses a salt
that is not such a 32-byte digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import blake3

__all__ = ["SALT_SIZE", "Neighbours", "build_overlay", "overlay_salt"]

SALT_SIZE = 32


@dataclass(frozen=True)
class Neighbours:
    parents: tuple[str, ...]
    children: tuple[str, ...]


def overlay_salt(genesis_digest: bytes) -> bytes:
    """The overlay salt of the cluster whose genesis has digest `genesis_digest` (its cluster id):
    fixed before any observer picks its name, and the same at every node."""
    if len(genesis_digest) < 16:
        raise ValueError("the overlay salt comes from a genesis digest of at least 16 bytes")
    return blake3.blake3(b"trustchain/overlay/v1\0" + genesis_digest).digest()


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
    if len(salt) != SALT_SIZE:
        raise ValueError(f"the salt must be the {SALT_SIZE}-byte overlay_salt of a genesis digest")
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
