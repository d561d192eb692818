"""DNS for TrustChain: zone model, DNSSEC signing and validation, authoritative answers. Sans-I/O."""
