"""An observer's node.toml: generated ones load, and one configured as if it could vote or sign is refused
with the key that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_node import cluster
from reference_node import config as cfgmod


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return cluster.generate(tmp_path_factory.mktemp("gen"), 4, 3, dns_listeners=False, observers=2)


def test_generated_observer_loads_and_validators_list_it(generated: list[Path]) -> None:
    assert [p.parent.name for p in generated][-2:] == ["observer0", "observer1"]
    obs = cfgmod.load(generated[-1], environ={})
    assert obs.trustchain.role == "observer" and obs.replica_id == -1
    assert obs.ca.intermediate_key is None and obs.ct.log_key is None
    val = cfgmod.load(generated[0], environ={})
    assert [o.name for o in val.consensus.observers] == ["observer0", "observer1"]
    assert val.consensus.observers == obs.consensus.observers


@pytest.mark.parametrize(("old", "new", "key"), [
    ('node_id = "observer1"', 'node_id = "node2"', "trustchain.node_id"),  # a validator's name
    ('node_id = "observer1"', 'node_id = "observer9"', "trustchain.node_id"),  # not listed
    ('key_file = "node.key"\n', "", "trustchain.key_file"),
    ('intermediate_cert = "../intermediate.pem"', 'intermediate_cert = "../intermediate.pem"\n'
     'intermediate_key = "share.json"', "ca.intermediate_key"),
    ('[api]', '[ct]\nlog_key = "ct.key"\n\n[api]', "ct.log_key"),
    ('transport = "tcp"', 'transport = "quic"', "consensus.observers"),
    ('{ name = "observer0"', '{ name = "node0"', "consensus.observers"),
])
def test_observer_misconfigurations(generated: list[Path], tmp_path: Path, old: str, new: str, key: str) -> None:
    text = generated[-1].read_text()
    assert old in text
    bad = tmp_path / "node.toml"
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(bad, environ={})
    assert e.value.key == key, e.value


def test_launcher_creates_observers_and_starts_them_after_the_validators(tmp_path: Path) -> None:
    configs = cluster.init_cluster(tmp_path / "c", 4, 3, "tcp", observers=2)
    assert [p.parent.name for p in cluster.cluster_configs(tmp_path / "c")] == [p.parent.name for p in configs] == [
        "node0", "node1", "node2", "node3", "observer0", "observer1"]
    assert (tmp_path / "c" / "observer1" / "node.key").stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError, match="--observers"):
        cluster.init_cluster(tmp_path / "q", 4, 3, "quic", observers=1)
