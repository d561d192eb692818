"""Parameter schemas: which `params` a Byzantine behaviour or a replicated application reads, of what
type and within what range.

Plug-ins declare them as a class attribute, `param_types: ParamSchema`, next to the code that reads
the values (`Behaviour.param`, `SimApp.params`); the scenario loader (sim/scenario.py) checks every
scenario's `params` against them before a run starts, so a misspelt key or a value of the wrong type
is an error that names its field instead of a silently ignored setting or a crash mid-run.

A schema maps each accepted key to a plain type (`bool`, `int`, `float`, `str`, `list`) or to a
`ParamRule` that also bounds the value. Numbers are always finite; `float` accepts integers; a boolean
is never a number. A plug-in that declares nothing accepts no params.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True)
class ParamRule:
    """One accepted parameter.

    `kind` is bool, int, float, str or list. `minimum`/`maximum` bound a number (for a list: each of its
    items); `choices` restricts a string; `items` is the type of a list's items; `node_ids` makes an int
    (or a list's ints) a replica id, checked against the cluster size."""

    kind: type
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    items: type | None = None
    node_ids: bool = False


ParamSchema: TypeAlias = dict[str, type | ParamRule]

#: a probability
PROBABILITY = ParamRule(float, minimum=0.0, maximum=1.0)
#: a time span or a point in simulated time (seconds or milliseconds, as the key's suffix says)
DURATION = ParamRule(float, minimum=0.0)
#: a list of replica ids
NODE_IDS = ParamRule(list, items=int, node_ids=True)


def count(minimum: int = 0) -> ParamRule:
    """A whole number of things, at least `minimum`."""
    return ParamRule(int, minimum=minimum)
