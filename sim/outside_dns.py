"""The public DNS outside TrustChain, as each validator sees it: ground truth and per-validator views.

Outside-name validation (`trustchain.authorization.observations`) trusts no single view of the public
DNS: each validator looks on its own and a quorum of matching observations decides. To test that, the
views must differ the way real ones do. `OutsideDNS` holds the ground truth (which TXT records the
accounts that really control each name published) and one perspective per validator:

* honest: sees the truth after a lookup latency, and sometimes nothing (a transient resolver failure,
  which a node reports as "not seen", as `reference_node.outside_dns.saw_txt` does);
* poisoned: an honest validator whose resolver the attacker poisoned: below every name she poisoned
  it sees only the records she planted there (the real ones are hidden from it);
* lying: a Byzantine validator colluding with the attacker: it reports "seen" for every validation an
  attacker's account opens, and withholds (or denies) the honest accounts' ones.

Pure bookkeeping over seeded RNGs (one per validator, so one validator's draws never shift
another's); when a validator looks and how its observation is ordered is sim/apps/outside.py.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sim.params import DURATION, NODE_IDS, PROBABILITY, ParamRule, ParamSchema, count

__all__ = [
    "HONEST",
    "LIE_MODES",
    "LYING",
    "PARAM_TYPES",
    "POISONED",
    "OutsideDNS",
    "OutsideDNSConfig",
    "check_params",
    "honest_names",
    "unclaimed_names",
]

HONEST, POISONED, LYING = "honest", "poisoned", "lying"
#: what a lying validator does with a validation an honest account opened
LIE_MODES = ("withhold", "deny")

#: the application params that configure the outside DNS (checked when the scenario loads)
PARAM_TYPES: ParamSchema = {
    "names": count(0),  # outside names honest clients control and publish their challenge records at
    "unclaimed": count(0),  # outside names nobody controls (the attacker tries them too)
    "poisoned": NODE_IDS,  # honest validators whose resolver the attacker poisons
    "lying": NODE_IDS,  # Byzantine validators that lie about what they saw
    "lie_to_honest": ParamRule(str, choices=LIE_MODES),
    "lookup_min_ms": DURATION,
    "lookup_max_ms": DURATION,
    "lookup_failure": PROBABILITY,  # chance that an honest lookup gets no answer at all
}


def honest_names(count_: int) -> list[str]:
    return [f"site{i}.test" for i in range(count_)]


def unclaimed_names(count_: int) -> list[str]:
    return [f"free{i}.test" for i in range(count_)]


@dataclass(frozen=True)
class OutsideDNSConfig:
    names: int = 4
    unclaimed: int = 2
    poisoned: frozenset[int] = frozenset()
    lying: frozenset[int] = frozenset()
    lie_to_honest: str = "withhold"
    lookup_min_us: int = 20_000
    lookup_max_us: int = 200_000
    lookup_failure: float = 0.0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> OutsideDNSConfig:
        """The configuration from already-checked `params` (sim/params.py); absent keys keep defaults."""
        d = cls()
        return cls(
            names=int(params.get("names", d.names)),
            unclaimed=int(params.get("unclaimed", d.unclaimed)),
            poisoned=frozenset(params.get("poisoned", ())),
            lying=frozenset(params.get("lying", ())),
            lie_to_honest=str(params.get("lie_to_honest", d.lie_to_honest)),
            lookup_min_us=round(float(params.get("lookup_min_ms", d.lookup_min_us / 1000)) * 1000),
            lookup_max_us=round(float(params.get("lookup_max_ms", d.lookup_max_us / 1000)) * 1000),
            lookup_failure=float(params.get("lookup_failure", d.lookup_failure)),
        )

    @property
    def faulty(self) -> frozenset[int]:
        """Validators whose view of the outside DNS is not the truth."""
        return self.poisoned | self.lying


def check_params(params: dict[str, Any], n: int) -> tuple[str, str] | None:
    """A problem with the outside-DNS params taken together, as (key, reason), or None."""
    both = sorted(set(params.get("poisoned", ())) & set(params.get("lying", ())))
    if both:
        return "lying", f"validator {both[0]} is also listed as poisoned: a validator is one or the other"
    d = OutsideDNSConfig()
    low = float(params.get("lookup_min_ms", d.lookup_min_us / 1000))
    high = float(params.get("lookup_max_ms", d.lookup_max_us / 1000))
    if low > high:
        return "lookup_max_ms", f"must be at least lookup_min_ms ({low:g}), got {high:g}"
    if not params.get("names", d.names) and not params.get("unclaimed", d.unclaimed):
        return "names", "no outside names at all: set names or unclaimed above 0"
    return None


class OutsideDNS:
    """Ground truth and each validator's view of it."""

    def __init__(self, config: OutsideDNSConfig, n: int, seed: int) -> None:
        assert all(0 <= v < n for v in config.faulty), "validator ids are checked when the scenario loads"
        self.config = config
        self.n = n
        self.controllers: dict[str, bytes] = {}  # name -> the account that really controls it
        self.published: dict[str, dict[str, bytes]] = {}  # record name -> value -> account that published it
        self.poisoned_names: set[str] = set()  # names below which poisoned resolvers answer the attacker's records
        self.planted: dict[str, set[str]] = {}  # record name -> values the attacker planted there
        self.attackers: set[bytes] = set()  # accounts the lying validators collude with
        self.lookups: Counter[str] = Counter()  # what the views answered, for reports
        self._rngs = [random.Random(f"{seed}/outside-dns/{v}") for v in range(n)]

    def perspective(self, validator: int) -> str:
        if validator in self.config.lying:
            return LYING
        return POISONED if validator in self.config.poisoned else HONEST

    # ------------------------------------------------------------------ the world outside

    def control(self, name: str, account: bytes) -> None:
        """Ground truth: `account` holds `name` at its registrar (only it can publish there)."""
        assert name not in self.controllers, f"{name} already has a controller"
        self.controllers[name] = account

    def publish(self, name: str, record_name: str, value: str, account: bytes) -> None:
        """The controller of `name` publishes TXT `value` at `record_name` (below `name`)."""
        assert self.controllers.get(name) == account, "only the controller of a name can publish under it"
        assert record_name == name or record_name.endswith("." + name)
        self.published.setdefault(record_name, {})[value] = account

    def poison(self, name: str) -> None:
        """The attacker poisons the poisoned validators' resolvers for `name` and every name below it:
        from now on they answer only what she plants there."""
        self.poisoned_names.add(name)

    def plant(self, record_name: str, value: str) -> None:
        """The attacker makes the poisoned resolvers answer `value` at `record_name`."""
        assert self._poisoned(record_name), "the attacker plants records only below names she poisoned"
        self.planted.setdefault(record_name, set()).add(value)

    def _poisoned(self, record_name: str) -> bool:
        return any(record_name == n or record_name.endswith("." + n) for n in self.poisoned_names)

    def publisher(self, record_name: str, value: str) -> bytes | None:
        """Ground truth: who really published `value` at `record_name` (None: nobody did)."""
        return self.published.get(record_name, {}).get(value)

    # ------------------------------------------------------------------ the validators' views

    def latency_us(self, validator: int) -> int:
        """How long this validator's lookup takes (drawn when it starts)."""
        return self._rngs[validator].randint(self.config.lookup_min_us, self.config.lookup_max_us)

    def txt(self, validator: int, record_name: str) -> list[str] | None:
        """What this validator's resolver answers now for TXT `record_name`; None: no answer."""
        view = self.perspective(validator)
        if view != LYING and self._rngs[validator].random() < self.config.lookup_failure:
            self.lookups["failed"] += 1
            return None
        if view == POISONED and self._poisoned(record_name):
            self.lookups["poisoned"] += 1
            return sorted(self.planted.get(record_name, ()))
        self.lookups["true"] += 1
        return sorted(self.published.get(record_name, {}))

    def report(self, validator: int, account: bytes, record_name: str, expected: str) -> bool | None:
        """What this validator orders for a validation `account` opened: seen, not seen, or None to
        withhold. Honest and poisoned validators report their resolver's answer (no answer: not seen)."""
        if self.perspective(validator) == LYING:
            if account in self.attackers:
                return True
            return None if self.config.lie_to_honest == "withhold" else False
        values = self.txt(validator, record_name)
        return values is not None and expected in values
