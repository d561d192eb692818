"""deploy/: the compose file, StatefulSet and ConfigMap parse, and the ConfigMap's node.toml files are
accepted by the node's own config parser (with real keys in place of the placeholders)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from reference_node import config as cfgmod

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_compose_has_five_validators() -> None:
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = doc["services"]
    assert sorted(services) == [f"validator{i}" for i in range(5)]
    for svc in services.values():
        assert "TRUSTCHAIN_ROLE=validator" in svc["environment"] and svc["restart"] == "always"
        assert any(v.endswith(":/var/lib/trustchain") for v in svc["volumes"])
    assert "ENTRYPOINT [\"python\", \"-m\", \"reference_node\"]" in (DEPLOY / "Dockerfile").read_text()


def test_statefulset_and_configmap() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "statefulset.yaml").read_text()))
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    assert sts["spec"]["replicas"] == 5 and sts["spec"]["serviceName"] == "trustchain"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "data", "mountPath": "/var/lib/trustchain"} in container["volumeMounts"]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "100Gi"
    cm = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and len(cm["data"]) == 5
    for i in range(5):
        text = cm["data"][f"node{i}.toml"]
        for j in range(5):
            text = text.replace(f"REPLACE_WITH_NODE{j}_PUBLIC_KEY_HEX", f"{j + 1:02x}" * 32)
        cfg = cfgmod.parse(tomllib.loads(text), f"node{i}.toml", Path("/etc/trustchain") / f"node{i}", {})
        assert cfg.replica_id == i and cfg.consensus.transport == "quic"
        assert cfg.storage.path == Path("/var/lib/trustchain")
