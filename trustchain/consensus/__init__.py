"""PBFT (Castro & Liskov, OSDI'99 / TOCS'02) as sans-I/O state machines."""
