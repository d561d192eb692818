"""The local cluster launcher: `cluster init` never generates over an existing cluster, a data directory
belongs to its genesis, `cluster start` supervises (restarts a killed node, stops every node on SIGTERM,
leaves none orphaned), and kill -9 chaos under load loses no acknowledged certificate."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from node_harness import REPO, http, issued_from
from test_node_cluster import _csr

from reference_node.runtime import bind_to_genesis
from reference_node.storage import Storage
from reference_node.supervisor import ManagedNode, RestartPolicy, Supervisor

ENV = dict(os.environ, PYTHONPATH=str(REPO))


def _launcher(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reference_node", "cluster", *args], capture_output=True,
                          text=True, env=ENV, cwd=REPO, timeout=300)


def _pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_init_refuses_a_directory_that_holds_a_cluster_and_start_refuses_one_without(tmp_path: Path) -> None:
    res = _launcher("start", "--dir", str(tmp_path / "empty"))
    assert res.returncode == 2 and "holds no cluster" in res.stderr and "Traceback" not in res.stderr, res
    res = _launcher("init", "--dir", str(tmp_path / "c"), "--nodes", "4")
    assert res.returncode == 0, res.stderr
    genesis = (tmp_path / "c" / "genesis.json").read_bytes()
    res = _launcher("init", "--dir", str(tmp_path / "c"), "--nodes", "4")
    assert res.returncode == 2 and "already holds a cluster" in res.stderr, res
    assert (tmp_path / "c" / "genesis.json").read_bytes() == genesis
    config = tmp_path / "c" / "node0" / "node.toml"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    taken_port = taken.getsockname()[1]
    text = config.read_text()
    for wrong, message in [(text.replace('network = "devnet"', 'network = "mainnet"'), "is for network 'devnet'"),
                           (text.replace('role = "validator"', 'role = "observer"'), "observers"),
                           (re.sub(r'(\[api\]\nlisten = )"[^"]+"', rf'\1"127.0.0.1:{taken_port}"', text),
                            f"api.listen: cannot listen on 127.0.0.1:{taken_port}")]:
        config.write_text(wrong)
        res = subprocess.run([sys.executable, "-m", "reference_node", "--config", str(config)], capture_output=True,
                             text=True, env=ENV, cwd=REPO, timeout=60)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
    taken.close()


def test_a_data_directory_refuses_another_clusters_genesis(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    bind_to_genesis(storage, b"\x01" * 32, tmp_path / "data")
    bind_to_genesis(storage, b"\x01" * 32, tmp_path / "data")  # the same cluster again: fine
    storage.close()
    storage = Storage(tmp_path / "data")
    with pytest.raises(ValueError, match="holds the data of another cluster"):
        bind_to_genesis(storage, b"\x02" * 32, tmp_path / "data")
    storage.close()


def _sleeper(name: str, tmp: Path, code: str = "import time; time.sleep(120)") -> ManagedNode:
    return ManagedNode(name, [sys.executable, "-c", code], tmp / f"{name}.log")


def test_supervisor_restarts_a_killed_node_and_leaves_fatal_and_crash_looping_ones_down(tmp_path: Path) -> None:
    reports: list[str] = []
    steady = _sleeper("steady", tmp_path)
    fatal = _sleeper("fatal", tmp_path, "import sys; sys.exit(2)")
    looping = _sleeper("looping", tmp_path, "import sys; sys.exit(1)")
    sup = Supervisor([steady, fatal, looping], RestartPolicy(first_delay_s=0.0, max_restarts=3, window_s=60),
                     report=reports.append)
    for node in sup.nodes:
        sup.start(node)
    assert steady.proc is not None
    first = steady.proc.pid
    steady.proc.send_signal(signal.SIGKILL)
    steady.proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (fatal.given_up and looping.given_up and steady.proc
                                               and steady.proc.pid != first):
        sup.step(time.monotonic())
        time.sleep(0.05)
    try:
        assert steady.proc is not None and steady.proc.pid != first and steady.proc.poll() is None, reports
        assert fatal.given_up and len(fatal.restarts) == 0, reports
        assert looping.given_up and len(looping.restarts) == 3, reports
        assert any("steady exited with status -9" in r for r in reports), reports
    finally:
        sup.stop()
    assert steady.proc.poll() is not None


def test_nodes_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    marker = f"trustchain-orphan-test-{os.getpid()}"
    script = (f"from pathlib import Path; from reference_node.supervisor import *; import sys\n"
              f"nodes = [ManagedNode(f'n{{i}}', [sys.executable, '-c', 'import time; time.sleep(120)', "
              f"'{marker}'], Path(r'{tmp_path}') / f'n{{i}}.log') for i in range(3)]\n"
              f"Supervisor(nodes).run()\n")
    sup = subprocess.Popen([sys.executable, "-c", script], env=ENV, cwd=REPO)
    deadline = time.monotonic() + 20
    while len(_pids(marker)) < 3:
        assert time.monotonic() < deadline, "the supervisor did not start its nodes"
        time.sleep(0.1)
    sup.send_signal(signal.SIGKILL)
    sup.wait()
    deadline = time.monotonic() + 10
    while _pids(marker):
        assert time.monotonic() < deadline, f"orphaned nodes: {_pids(marker)}"
        time.sleep(0.1)


def _issue(api: str, name: str) -> str | None:
    """One certificate through the development API; its serial once acknowledged (a 201, or a 202 then polled
    until issued), else None."""
    try:
        code, ch = http("POST", api + "/api/v1/cert/challenge", {"names": [name]}, timeout=30)
        if code != 200:
            return None
        chal = ch["challenges"][0]
        update = {"origin": "chaos.example.", "ops": [{"op": "add", "name": chal["txt_name"], "type": "TXT",
                                                      "ttl": 60, "values": [f'"{chal["txt_value"]}"']}]}
        if http("POST", api + "/api/v1/dns/update", {"update": update}, timeout=30)[0] != 200:
            return None
        code, res = http("POST", api + "/api/v1/cert/request", {"csr": _csr([name]), "names": [name],
                                                               "proofs": [chal["key_authorization"]]},
                         timeout=60)
        if code not in (201, 202):
            return None
        return str(issued_from(api, code, res, timeout=30)["serial"])  # 202: acknowledged once polled issued
    except (OSError, AssertionError, KeyError):  # the node went away, or never answered it issued
        return None


def test_kill_9_chaos_under_a_supervising_launcher_loses_no_acknowledged_certificate(tmp_path: Path) -> None:
    import tomllib

    assert _launcher("init", "--dir", str(tmp_path), "--nodes", "5").returncode == 0
    configs = [tmp_path / f"node{i}" / "node.toml" for i in range(5)]
    apis = ["http://" + tomllib.loads(c.read_text())["api"]["listen"] for c in configs]
    launcher = subprocess.Popen([sys.executable, "-m", "reference_node", "cluster", "start", "--dir", str(tmp_path)],
                                env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def healthy(i: int) -> bool:
        try:
            return http("GET", apis[i] + "/api/v1/health", timeout=2)[0] == 200
        except OSError:
            return False

    def wait(predicate: object, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            assert time.monotonic() < deadline and launcher.poll() is None, what
            time.sleep(0.2)

    try:
        wait(lambda: all(healthy(i) for i in range(5)), "every node healthy")
        code, res = http("POST", apis[0] + "/api/v1/dns/update", {"create": {
            "origin": "chaos.example.", "primary_ns": "ns1.chaos.example.", "admin": "hostmaster.chaos.example.",
            "nameservers": ["ns1.chaos.example."]}}, timeout=60)
        assert code == 200, res
        acknowledged: list[str] = []
        stop = threading.Event()

        def load() -> None:
            k = 0
            while not stop.is_set():
                serial = _issue(apis[k % 5], f"c{k}.chaos.example")
                if serial is not None:
                    acknowledged.append(serial)
                k += 1

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        primary = http("GET", apis[1] + "/api/v1/status", timeout=10)[1]["primary"]
        for victim in [(primary + 1) % 5, primary]:  # a backup, then the primary
            [pid] = _pids(str(configs[victim]))
            os.kill(pid, signal.SIGKILL)
            wait(lambda v=victim, p=pid: _pids(str(configs[v])) not in ([], [p]) and healthy(v),
                 f"node{victim} restarted by the launcher")
            time.sleep(3)  # load runs against the restarted node too
        stop.set()
        worker.join(120)
        assert len(acknowledged) >= 3, acknowledged
        for i in range(5):
            for serial in acknowledged:
                wait(lambda i=i, s=serial: http("GET", apis[i] + f"/api/v1/cert/{s}", timeout=10)[0] == 200,
                     f"certificate {serial} on node{i}", timeout=60)
        pids = [p for c in configs for p in _pids(str(c))]
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(30) == 0
        assert launcher.stderr is not None and "restarting it" in launcher.stderr.read()
        assert not [p for p in pids if Path(f"/proc/{p}").exists()], "nodes left running after SIGTERM"
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for c in configs:
            for p in _pids(str(c)):
                os.kill(p, signal.SIGKILL)
