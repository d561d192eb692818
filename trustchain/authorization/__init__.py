"""Authorization rules that are replicated policy: zone ownership and outside-DNS validation."""

from trustchain.authorization.observations import (
    Decided,
    ExternalValidations,
    ValidationLimits,
    ValidationOpened,
)
from trustchain.authorization.zones import VALIDATORS, CreateDecision, ZonePolicy, default_public_suffixes

__all__ = [
    "VALIDATORS",
    "CreateDecision",
    "Decided",
    "ExternalValidations",
    "ValidationLimits",
    "ValidationOpened",
    "ZonePolicy",
    "default_public_suffixes",
]
