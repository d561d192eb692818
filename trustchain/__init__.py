"""TrustChain protocol core: sans-I/O state machines driven by the simulator and the reference node.

Subpackages: `consensus` (PBFT), `app` (the replicated application router), `ca` (threshold CA), `ct`
(Certificate Transparency log), `dns` (DNSSEC zones and resolution), `crypto` (signature schemes).
Every exception they raise derives from `TrustChainError`.
"""

from trustchain.errors import TrustChainError

__all__ = ["TrustChainError", "__version__"]

__version__ = "0.1.0"
