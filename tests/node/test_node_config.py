"""node.toml parsing: generated configs load; every error names the file, the key and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_node import cluster
from reference_node import config as cfgmod


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cluster.generate(tmp_path_factory.mktemp("gen"), 4, 3, dns_listeners=False)[0]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "node.toml"
    p.write_text(text)
    return p


def _edit(generated: Path, tmp_path: Path, old: str, new: str) -> Path:
    text = generated.read_text()
    assert old in text
    return _write(tmp_path, text.replace(old, new))


def test_generated_config_loads(generated: Path) -> None:
    cfg = cfgmod.load(generated, environ={})
    assert cfg.trustchain.node_id == "node0" and cfg.replica_id == 0
    assert len(cfg.consensus.validators) == 4 and cfg.consensus.threshold == 3
    assert cfg.consensus.timeout_us == 2_000_000 and cfg.storage.max_size == 10**9
    assert cfg.storage.prune_age_us == 90 * 86_400 * 10**6
    assert cfg.storage.path == generated.parent / "data"  # relative to the file


def test_dns_rate_limiting_is_off_unless_configured(generated: Path, tmp_path: Path) -> None:
    cfg = cfgmod.load(generated, environ={})
    assert (cfg.dns.rrl_rate, cfg.dns.rrl_slip) == (0.0, 2)
    path = _edit(generated, tmp_path, "ttl_override = false", "ttl_override = false\nrrl_rate = 20\nrrl_slip = 3")
    cfg = cfgmod.load(path, environ={})
    assert (cfg.dns.rrl_rate, cfg.dns.rrl_slip) == (20.0, 3)


def test_certificate_answers_wait_a_few_seconds_unless_configured(generated: Path, tmp_path: Path) -> None:
    assert cfgmod.load(generated, environ={}).api.issue_wait_us == 5_000_000
    path = _edit(generated, tmp_path, "unsigned_writes = true", 'unsigned_writes = true\nissue_wait = "0s"')
    assert cfgmod.load(path, environ={}).api.issue_wait_us == 0  # answer 202 at once: clients poll


def test_env_overrides_network_and_role(generated: Path) -> None:
    cfg = cfgmod.load(generated, environ={"TRUSTCHAIN_NETWORK": "testnet"})
    assert cfg.trustchain.network == "testnet"
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(generated, environ={"TRUSTCHAIN_ROLE": "king"})
    assert "TRUSTCHAIN_ROLE" in str(e.value) and "validator" in str(e.value)


@pytest.mark.parametrize(("old", "new", "key", "reason"), [
    ('timeout = "2s"', 'timeout = "2 fortnights"', "consensus.timeout", "not a duration"),
    ('max_size = "1GB"', 'max_size = "lots"', "storage.max_size", "not a size"),
    ('prune_age = "90d"', 'prune_age = "90d"\ncolour = "blue"', "storage.colour", "unknown key"),
    ("threshold = 3", "threshold = 9", "consensus.threshold", "must be between f+1 = 2 and n-f = 3"),
    ("threshold = 3", 'threshold = "three"', "consensus.threshold", "expected an integer"),
    ('role = "validator"', 'role = "observer"\nrole2 = 1', "trustchain.role2", "unknown key"),
    ('transport = "tcp"', 'transport = "carrier-pigeon"', "consensus.transport", "must be one of tcp, quic"),
    ('cache_size = "64MB"', "cache_size = -1", "dns.cache_size", "expected a size"),
    ('ttl_override = false', 'ttl_override = "sometimes"', "dns.ttl_override", "expected false, true"),
    ('ttl_override = false', "ttl_override = false\nrrl_rate = -5", "dns.rrl_rate", "responses per second"),
    ('ttl_override = false', "ttl_override = false\nrrl_slip = -1", "dns.rrl_slip", "must be >= 0"),
    ("unsigned_writes = true", 'unsigned_writes = true\nissue_wait = "10m"', "api.issue_wait",
     "must be between 0s and 60s"),
    ('ttl_override = false', 'ttl_override = false\nworkers = 0', "dns.workers", "expected a number of processes"),
    ('ttl_override = false', 'ttl_override = false\nworkers = true', "dns.workers", "expected a number of processes"),
])
def test_errors_name_file_key_reason(generated: Path, tmp_path: Path, old: str, new: str, key: str,
                                     reason: str) -> None:
    path = _edit(generated, tmp_path, old, new)
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(path, environ={})
    assert e.value.file == str(path) and e.value.key == key, str(e.value)
    assert reason in e.value.reason and str(path) in str(e.value)


def test_structural_errors(tmp_path: Path, generated: Path) -> None:
    p = _write(tmp_path, "[trustchain\n")
    with pytest.raises(cfgmod.ConfigError, match="not valid TOML"):
        cfgmod.load(p, environ={})
    p = _write(tmp_path, '[trustchain]\nnode_id = "x"\n[storage]\npath = "d"\n')
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(p, environ={})
    assert e.value.key == "[consensus]" and e.value.reason == "missing section"
    p = _edit(generated, tmp_path, '[api]', '[apii]')
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(p, environ={})
    assert e.value.key == "[apii]" and "unknown section" in e.value.reason
    p = _edit(generated, tmp_path, 'node_id = "node0"', 'node_id = "stranger"')
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(p, environ={})
    assert e.value.key == "trustchain.node_id" and "not one of consensus.validators" in e.value.reason
    p = _edit(generated, tmp_path, 'address = "127.0.0.1:', 'address = "127.0.0.1;')
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(p, environ={})
    assert e.value.key == "consensus.validators" and "[0].address" in e.value.reason


def test_units() -> None:
    assert cfgmod.parse_duration_us("500ms") == 500_000 and cfgmod.parse_duration_us("24h") == 86_400 * 10**6
    assert cfgmod.parse_size("1TB") == 10**12 and cfgmod.parse_size("512MiB") == 512 << 20
    assert cfgmod.parse_address("[::]:53") == ("::", 53) and cfgmod.parse_address(":8443") == ("127.0.0.1", 8443)
