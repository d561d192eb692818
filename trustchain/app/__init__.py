"""Replicated applications: deterministic state machines executed on ordered batches."""
