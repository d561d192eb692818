"""Deterministic discrete-event simulator that runs the real trustchain/ protocol code in virtual time."""
