"""Checkers for observers, independent of the observer code: they compare what each honest observer
executed (recorded by `sim.observers` from its effects) with what the honest validators executed, and
its final application state with a validator's at the same sequence number."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.verdict import Verdict

if TYPE_CHECKING:
    from sim.world import World

__all__ = ["check_observers"]


def _validator_digests(world: World) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for rec in world.executions:
        if not world.nodes[rec.node].byzantine:
            out.setdefault(rec.seq, rec.batch_digest)
    return out


def _state(app: object) -> object:
    data = getattr(app, "data", None)
    if data is not None:
        return dict(data)
    snapshot = getattr(app, "snapshot", None)
    assert callable(snapshot)
    return snapshot()


def check_observers(world: World) -> tuple[list[Verdict], Verdict]:
    """(safety verdicts, liveness verdict) for the run's observers."""
    layer = world.observers
    assert layer is not None
    validators = _validator_digests(world)
    honest = layer.honest()
    problems: list[str] = []
    checked = 0
    for node in honest:
        restored = set(node.restored)
        prev = 0
        for seq, d in node.executed:
            checked += 1
            expected = validators.get(seq)
            if expected is None:
                problems.append(f"{node.name} executed seq {seq}, which no honest validator executed")
            elif expected != d:
                problems.append(f"{node.name} executed batch {d.hex()[:16]} at seq {seq}, the validators "
                                f"{expected.hex()[:16]}")
            if seq != prev + 1 and not any(prev < r <= seq - 1 for r in restored):
                problems.append(f"{node.name} executed seq {seq} after seq {prev} with nothing restored between")
            prev = max(prev, seq)
        if len(problems) > 20:
            break
    agreement = Verdict("observer_agreement", not problems,
                        "; ".join(problems[:3]) if problems else
                        f"{len(honest)} honest observers, {checked} executions, each the validators' batch "
                        "at its sequence number, in order", checked=checked)

    by_seq: dict[int, object] = {}
    for rnode in world.nodes.values():
        if not rnode.byzantine and rnode.up:
            by_seq.setdefault(rnode.replica.status.last_executed, _state(rnode.replica.app))
    mismatched, compared = [], 0
    for node in honest:
        assert node.observer is not None
        want = by_seq.get(node.observer.last_executed)
        if want is None:
            continue
        compared += 1
        if _state(node.observer.app) != want:
            mismatched.append(node.name)
    state = Verdict("observer_state", not mismatched,
                    f"{len(mismatched)} observers' state differs from the validators' at the same sequence: "
                    + ", ".join(mismatched[:5]) if mismatched else
                    f"{compared} observers hold exactly a validator's application state at their sequence number",
                    checked=compared)

    target = max((n.replica.status.last_executed for n in world.nodes.values() if not n.byzantine and n.up),
                 default=0)
    behind = [n.name for n in honest if n.observer is not None and n.observer.last_executed < target]
    rejected = layer.rejected()
    live = Verdict("observer_liveness", not behind,
                   f"{len(behind)} of {len(honest)} honest observers behind the validators' seq {target}: "
                   + ", ".join(behind[:5]) if behind else
                   f"all {len(honest)} honest observers reached seq {target}; refused "
                   + (", ".join(f"{k} {v}" for k, v in sorted(rejected.items())) or "nothing"),
                   checked=len(honest))
    return [agreement, state], live
