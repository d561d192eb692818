"""The ACME server (RFC 8555) as a replicated sub-application: see `trustchain.acme.app`."""
