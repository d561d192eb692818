"""Consensus time as datetimes: the only clock the replicated CA reads.

Why a module of its own: the CA, its CRLs and its OCSP responses all turn the ordered batch's
``time_us`` into certificate validity and revocation times, and all must do it the same way on every
replica (never the local clock).
"""

from __future__ import annotations

import datetime as dt

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def consensus_datetime(time_us: int) -> dt.datetime:
    """Consensus time (microseconds since the epoch) as an aware UTC datetime."""
    return EPOCH + dt.timedelta(microseconds=time_us)


def datetime_us(when: dt.datetime) -> int:
    """Inverse of ``consensus_datetime``, exact to the microsecond (no float rounding)."""
    delta = when.astimezone(dt.UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
