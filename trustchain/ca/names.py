"""DNS name rules for certificate requests, applied identically on every replica.

Why a separate module: the issuance policy, CAA lookup and the renewal planner all need the same
notion of "a valid host name", and a divergence between them would be a replica-divergence bug. The
validator node-name rule lives here too: it decides who may hold which name under the node domain."""

from __future__ import annotations

import re
from collections.abc import Sequence

import idna

MAX_NAME = 253
MAX_LABEL = 63
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

NODE_DOMAIN = "nodes.trustchain.internal"
_NODE_LABEL = re.compile(r"validator-(0|[1-9][0-9]{0,5})")


def normalize(name: str) -> str:
    """Lower case, no trailing dot: the one spelling that is stored, compared and signed."""
    return name.strip().lower().rstrip(".")


def check_dns_name(name: str, *, allow_wildcard: bool = False) -> str | None:
    """None if ``name`` (already normalized) is an acceptable A-label host name, else the reason.

    Rejects IP literals, single-label names, empty labels, non-LDH characters, ``xn--`` labels that are
    not valid IDNA 2008 A-labels, other labels with hyphens in positions 3 and 4 (reserved, RFC 5891
    4.2.3.1) and wildcards that are not exactly one whole left-most label (RFC 6125 section 6.4.3, CA/B
    BRs 3.2.2.6). A U-label name is refused with the A-label to request instead."""
    if not name:
        return "must be a non-empty ASCII (A-label) name"
    if not name.isascii():
        try:
            alabel = idna.encode(name.removeprefix("*."), uts46=True).decode()
        except idna.IDNAError:
            return "is not a valid internationalized name (IDNA 2008)"
        return f"is a U-label name: request its A-label {('*.' if name.startswith('*.') else '') + alabel!r}"
    if len(name) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    labels = name.split(".")
    if labels[0] == "*":
        if not allow_wildcard:
            return "wildcard names are not allowed"
        labels = labels[1:]
        if len(labels) < 2:
            return "wildcard must be above a registrable domain"
    if len(labels) < 2:
        return "single-label names are not allowed"
    for label in labels:
        if not _LABEL.match(label):
            return f"label {label[: MAX_LABEL + 1]!r} is not a valid LDH label"
        reason = _check_alabel(label)
        if reason:
            return reason
    if labels[-1].isdigit():
        return "IP addresses are not DNS names"
    return None


def _check_alabel(label: str) -> str | None:
    """An ``xn--`` label must decode to a valid U-label that encodes back to itself (RFC 5891 5.4)."""
    if label[2:4] != "--":
        return None
    if not label.startswith("xn--"):
        return f"label {label!r} has hyphens in positions 3 and 4 (reserved for IDNA)"
    try:
        roundtrip = idna.alabel(idna.ulabel(label)).decode()
    except (idna.IDNAError, UnicodeError):
        return f"label {label!r} is not a valid IDNA A-label"
    if roundtrip != label:
        return f"label {label!r} is not the canonical A-label (expected {roundtrip!r})"
    return None


def registered_domain(name: str) -> str:
    """The last two labels: a deterministic stand-in for the public-suffix registrable domain, used to
    group names for rate limits (a PSL would need to be replicated state to stay deterministic)."""
    labels = name.removeprefix("*.").split(".")
    return ".".join(labels[-2:])


def parents(name: str) -> list[str]:
    """``name`` and each ancestor up to (excluding) the root, nearest first (RFC 8659 tree climbing)."""
    labels = name.removeprefix("*.").split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def under(name: str, domain: str) -> bool:
    """``name`` is ``domain`` or a name below it."""
    return name == domain or name.endswith("." + domain)


def node_name(index: int, node_domain: str = NODE_DOMAIN) -> str:
    """The DNS name in validator ``index``'s (0-based replica id) TLS node certificate."""
    return f"validator-{index}.{node_domain}"


def node_index(name: str, node_domain: str = NODE_DOMAIN) -> int | None:
    """The validator index a (normalized) node name designates, or None if it is not one."""
    label, dot, rest = name.partition(".")
    if not dot or rest != node_domain:
        return None
    m = _NODE_LABEL.fullmatch(label)
    return int(m.group(1)) if m else None


def check_node_names(requested: Sequence[str], client: bytes, node_domain: str,
                     validator_keys: Sequence[bytes]) -> str | None:
    """The node-name rule. A name under ``node_domain`` is a validator's identity on the peer links, so
    DNS cannot prove control of it (the zone is not public, and a DNS update is itself an ordered
    command anyone may submit). Instead: ``validator-<i>.<node_domain>`` may be requested only alone and
    only by a request whose client key *is* validator i's consensus key (the request signature, checked
    by consensus, proves possession). Every other name under the node domain is refused. Returns None if
    no requested name is a node name, or if the rule holds; otherwise the error detail. Deterministic: it
    reads only the request and the genesis keys."""
    node = [n for n in requested if under(n, node_domain)]
    if not node:
        return None
    if len(requested) != 1:
        return "names: a node name must be requested alone"
    index = node_index(node[0], node_domain)
    if index is None or index >= len(validator_keys):
        return f"names: {node[0]!r}: not a validator node name under {node_domain}"
    if client != validator_keys[index]:
        return f"ownership: {node[0]!r}: only validator {index}'s consensus key may request it"
    return None
