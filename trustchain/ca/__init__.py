"""Threshold certificate authority: the CA's Ed25519 key exists only as FROST shares (t-of-n).

Modules: ``group`` (checked Ed25519 scalar/point ops over libsodium), ``frost`` (RFC 9591 signing),
``dkg`` (Pedersen DKG with PoK, so no dealer ever holds the key), ``sharebox`` (hybrid
X25519+ML-KEM-768 transport and AES-256-GCM at-rest storage of shares), ``x509``/``der``
(deterministic TBS bytes, assembled into certificates after threshold signing), ``validate``
(path building with named failure reasons).

The replicated CA built on them: ``issuance`` (``CAApplication``: ordered request -> deterministic
approve/reject -> pending TBS -> *finalize* verified under the group key; revocation), its wire format
``commands`` (ordered commands, typed results), the request checks in ``approval``, its ``policy``,
state ``records``, node ``events`` and ``consensus_time``, with ``names`` (host names, the validator
node-name rule), ``caa`` (RFC 8659), ``ownership`` (dns-01-style proof) and ``ratelimit``;
``revocation`` (CRL/OCSP signing state); ``root`` (issuing CA certificates, their revocation by the
validator set, the root CRL and root OCSP); ``serials`` (serial numbers from validator commit-reveal);
``ca_snapshot`` (the versioned snapshot); ``signing_service`` (the sans-I/O FROST coordinator beside
each replica, outside ``execute``); ``crl`` and ``ocsp`` (threshold-signed revocation status);
``rotation`` (renewal planning, root/intermediate rollover, proactive re-sharing of the group key).

All of it is sans-I/O: randomness is a ``rand_bytes(n) -> bytes`` callable passed in
(``random.Random(seed).randbytes`` in tests and the simulator, ``os.urandom`` in production) and
time is a timezone-aware ``datetime`` passed in (consensus time), never read from a clock.
"""
