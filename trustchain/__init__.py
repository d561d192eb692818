"""TrustChain protocol core: sans-I/O state machines driven by the simulator and the reference node."""

__version__ = "0.1.0"
