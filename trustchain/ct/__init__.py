"""Certificate Transparency log core (RFC 6962 / RFC 9162, C2SP checkpoints and tiles).

Everything here is sans-I/O: time, keys and storage are passed in, so every replica that executes the
same ordered submissions builds the same tree, byte for byte. The file-backed leaf store is a driver
concern and lives in `reference_node.ct_filestore`.

The names below are the package's public API; each module also lists its own in `__all__`.
"""

from trustchain.ct.api import CTAPI, APIError
from trustchain.ct.app import CTApplication, CTCommand, CTResult
from trustchain.ct.auditor import AuditEvent, Auditor, LogView
from trustchain.ct.checkpoint import Checkpoint, CheckpointError, SignedCheckpoint
from trustchain.ct.entry import EntryError, LogEntryType, PrecertEntry, SignedEntry, TimestampedEntry, X509Entry
from trustchain.ct.evidence import EvidenceError, SplitViewEvidence, detect_split_view
from trustchain.ct.gossip import GossipPeer
from trustchain.ct.log import CTLog, LogError, LoggedEntry
from trustchain.ct.merkle import ProofError, verify_consistency, verify_inclusion
from trustchain.ct.monitor import Monitor, MonitorEvent
from trustchain.ct.note import Note, NoteError, NoteSignature
from trustchain.ct.sct import SCTError, SignedCertificateTimestamp
from trustchain.ct.store import LeafStore, MemoryLeafStore, StorageError, StoreFactory, memory_store_factory
from trustchain.ct.tiles import TileClient, TileError, TileReader
from trustchain.ct.tree import LogTree
from trustchain.ct.validators import QuorumError, Validator, ValidatorSet

__all__ = [
    "CTAPI", "APIError", "AuditEvent", "Auditor", "CTApplication", "CTCommand", "CTLog", "CTResult", "Checkpoint",
    "CheckpointError", "EntryError", "EvidenceError", "GossipPeer", "LeafStore", "LogEntryType", "LogError",
    "LogTree", "LogView", "LoggedEntry", "MemoryLeafStore", "Monitor", "MonitorEvent", "Note", "NoteError",
    "NoteSignature", "PrecertEntry", "ProofError", "QuorumError", "SCTError", "SignedCertificateTimestamp",
    "SignedCheckpoint", "SignedEntry", "SplitViewEvidence", "StorageError", "StoreFactory", "TileClient", "TileError",
    "TileReader", "TimestampedEntry", "Validator", "ValidatorSet", "X509Entry", "detect_split_view",
    "memory_store_factory", "verify_consistency", "verify_inclusion",
]
