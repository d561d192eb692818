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


def test_statefulsets_hold_one_validators_secret_each_and_a_disruption_budget() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "statefulset.yaml").read_text()))
    sets = [d for d in docs if d["kind"] == "StatefulSet"]
    assert [s["metadata"]["name"] for s in sets] == [f"trustchain-{i}" for i in range(5)]
    for i, sts in enumerate(sets):
        assert sts["spec"]["replicas"] == 1 and sts["spec"]["serviceName"] == "trustchain"
        pod = sts["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert {"name": "data", "mountPath": "/var/lib/trustchain"} in container["volumeMounts"]
        assert {"name": "TRUSTCHAIN_STORAGE_PATH", "value": "/var/lib/trustchain"} in container["env"]
        config = next(v for v in pod["volumes"] if v["name"] == "config")
        secrets = [src["secret"] for src in config["projected"]["sources"] if "secret" in src]
        assert [s["name"] for s in secrets] == [f"trustchain-node{i}-keys"]  # its own keys, nobody else's
        assert all(item["path"].startswith(f"node{i}/") or item["path"] == "genesis.json"
                   for item in secrets[0]["items"])
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "100Gi"
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1  # f = 1 of 5
    cm = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and sorted(cm["data"]) == sorted(
        [f"node{i}.toml" for i in range(5)] + ["root.pem", "intermediate.pem"])
    for i in range(5):
        text = cm["data"][f"node{i}.toml"]
        for j in range(5):
            text = text.replace(f"REPLACE_WITH_NODE{j}_PUBLIC_KEY_HEX", f"{j + 1:02x}" * 32)
        cfg = cfgmod.parse(tomllib.loads(text), f"node{i}.toml", Path("/etc/trustchain") / f"node{i}", {})
        assert cfg.replica_id == i and cfg.consensus.transport == "quic"
        assert cfg.storage.path == Path("/var/lib/trustchain")
        assert cfg.consensus.validators[(i + 1) % 5].address[0] == f"trustchain-{(i + 1) % 5}-0.trustchain"


def test_the_image_installs_the_runtime_only_and_writes_only_to_its_data_volume() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    install = next(line for line in dockerfile.splitlines() if line.startswith("RUN pip install"))
    assert install.split() == ["RUN", "pip", "install", "--no-cache-dir", "--prefix=/install", "."]
    assert "TRUSTCHAIN_STORAGE_PATH=/var/lib/trustchain" in dockerfile
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    for heavy in ("matplotlib", "numpy", "pytest"):
        assert heavy not in runtime, heavy
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for svc in doc["services"].values():
        assert "TRUSTCHAIN_STORAGE_PATH=/var/lib/trustchain" in svc["environment"]
        assert any(v.endswith(":/etc/trustchain:ro") for v in svc["volumes"])


def test_the_storage_path_can_come_from_the_environment() -> None:
    cm = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())
    text = cm["data"]["node0.toml"]
    for j in range(5):
        text = text.replace(f"REPLACE_WITH_NODE{j}_PUBLIC_KEY_HEX", f"{j + 1:02x}" * 32)
    cfg = cfgmod.parse(tomllib.loads(text), "node0.toml", Path("/etc/trustchain/node0"),
                       {"TRUSTCHAIN_STORAGE_PATH": "/srv/trustchain"})
    assert cfg.storage.path == Path("/srv/trustchain")
