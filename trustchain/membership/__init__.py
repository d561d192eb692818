"""A validator set that changes through consensus: the replicated set and its votes (`state`), the
rules of a set of any size (`rules`), FROST re-sharing to the next set (`reshare`), the application
wrapper that replicates both (`app`) and the epoch-switching replica (`epochs`)."""

__all__: list[str] = []
