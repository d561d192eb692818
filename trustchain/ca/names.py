"""DNS name rules for certificate requests, applied identically on every replica.

Why a separate module: the issuance policy, CAA lookup and the renewal planner all need the same
notion of "a valid host name", and a divergence between them would be a replica-divergence bug."""

from __future__ import annotations

import re

MAX_NAME = 253
MAX_LABEL = 63
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def normalize(name: str) -> str:
    """Lower case, no trailing dot: the one spelling that is stored, compared and signed."""
    return name.strip().lower().rstrip(".")


def check_dns_name(name: str, *, allow_wildcard: bool = False) -> str | None:
    """None if ``name`` (already normalized) is an acceptable A-label host name, else the reason.

    Rejects IP literals, single-label names, empty labels, non-LDH characters and wildcards that are
    not exactly one whole left-most label (RFC 6125 section 6.4.3, CA/B BRs 3.2.2.6)."""
    if not name or not name.isascii():
        return "must be a non-empty ASCII (A-label) name"
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
    if labels[-1].isdigit():
        return "IP addresses are not DNS names"
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
