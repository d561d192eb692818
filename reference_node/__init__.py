"""Reference node: drives the trustchain/ state machines on asyncio.

The public API is listed in `__all__`. Its names are imported lazily (PEP 562), so that the CLI and
config tools do not load the node runtime and its transports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reference_node.config import ConfigError, NodeConfig
    from reference_node.genesis import Genesis, GenesisError
    from reference_node.runtime import Node, NodeHalted, SubmitTimeout, build_node
    from reference_node.transport import PeerTransport

__all__ = ["ConfigError", "Genesis", "GenesisError", "Node", "NodeConfig", "NodeHalted", "PeerTransport",
           "SubmitTimeout", "build_node"]

_HOME = {
    "ConfigError": "reference_node.config", "NodeConfig": "reference_node.config",
    "Genesis": "reference_node.genesis", "GenesisError": "reference_node.genesis",
    "Node": "reference_node.runtime", "NodeHalted": "reference_node.runtime", "SubmitTimeout": "reference_node.runtime",
    "build_node": "reference_node.runtime", "PeerTransport": "reference_node.transport",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'reference_node' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
