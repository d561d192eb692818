"""Every transparency-dev conformance vector in shared/vectors/merkle: valid ones verify, the rest are
rejected with ProofError (never another exception type)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from trustchain.ct.merkle import ProofError, verify_consistency, verify_inclusion

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "merkle"


def _files(kind: str) -> list[Path]:
    root = VECTORS / kind
    return sorted(root.rglob("*.json")) if root.is_dir() else []


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "", validate=True)


def _proof(value: list[str] | None) -> list[bytes]:
    return [_b64(p) for p in value or []]


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(VECTORS)) for p in paths]


INCLUSION = _files("inclusion")
CONSISTENCY = _files("consistency")
missing = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"conformance vectors not found at {VECTORS}")


@missing
def test_vector_corpus_is_complete() -> None:
    # Guards against a silently empty parametrisation (e.g. a moved folder) passing vacuously.
    assert len(INCLUSION) >= 90
    assert len(CONSISTENCY) >= 90
    assert any(not _load(p)["wantErr"] for p in INCLUSION)
    assert any(_load(p)["wantErr"] for p in CONSISTENCY)


@missing
@pytest.mark.parametrize("path", INCLUSION, ids=_ids(INCLUSION))
def test_inclusion_vector(path: Path) -> None:
    v = _load(path)
    args = (v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), _proof(v["proof"]), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@missing
@pytest.mark.parametrize("path", CONSISTENCY, ids=_ids(CONSISTENCY))
def test_consistency_vector(path: Path) -> None:
    v = _load(path)
    args = (v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), _proof(v["proof"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)
