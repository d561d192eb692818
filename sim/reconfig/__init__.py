"""Simulating a validator set that changes through consensus: scenarios (`scenario`), the driver
(`world`), the checkers (`checks`) and the run summary (`run`)."""

__all__: list[str] = []
