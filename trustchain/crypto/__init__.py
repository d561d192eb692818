"""Cryptographic interfaces shared by every protocol component."""
