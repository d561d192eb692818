"""A local cluster of real node processes on 127.0.0.1 ephemeral ports, driven over the HTTP API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reference_node import cluster

REPO = Path(__file__).resolve().parents[2]


def http(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
            ctype = resp.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        raw, status, ctype = exc.read(), exc.code, exc.headers.get("content-type", "")
    return status, (json.loads(raw) if "json" in ctype else raw.decode(errors="replace"))


def fetch(url: str, data: bytes | None = None, ctype: str = "") -> tuple[int, bytes]:
    """GET `url`, or POST `data` with content type `ctype`: (status, body), HTTP errors included."""
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"content-type": ctype} if ctype else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def until_issued(get: Callable[[str], tuple[int, Any]], code: int, res: Any, timeout: float = 120.0) -> dict[str, Any]:
    """The issued certificate's JSON from a certificate request's answer (or a poll's): the answer itself
    when it is 201 (200 to a poll), else (202) what polling its location with `get(path)` answers once that
    is 200. A signed write's answer carries it under `issuance`."""
    doc = res.get("issuance", res) if isinstance(res, dict) else res
    if code in (200, 201):
        return doc  # type: ignore[no-any-return]
    assert code == 202 and doc["status"] == "pending" and doc["location"], (code, res)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        code, polled = get(doc["location"])
        if code == 200:
            assert polled["status"] == "issued" and polled["pending_id"] == doc["pending_id"], polled
            return polled  # type: ignore[no-any-return]
        assert code == 202, (code, polled)
    raise AssertionError(f"request {doc['pending_id']} not issued within {timeout} s")


def issued_from(api: str, code: int, res: Any, timeout: float = 120.0) -> dict[str, Any]:
    """`until_issued` polling the node at `api`."""
    return until_issued(lambda path: http("GET", api + path), code, res, timeout)


class Cluster:
    def __init__(self, directory: Path, nodes: int = 5, threshold: int = 3, **kwargs: Any) -> None:
        self.dir = directory
        kwargs.setdefault("api_write_rate", 10_000.0)  # tests send bursts from one address
        self.configs = cluster.generate(directory, nodes, threshold, **kwargs)
        self.apis = []
        for c in self.configs:
            doc = tomllib.loads(c.read_text())
            self.apis.append("http://" + doc["api"]["listen"])
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * len(self.configs)  # observers too

    def start(self, i: int, *args: str, log_level: str = "WARNING") -> None:
        log = open(self.configs[i].parent / "node.log", "ab")  # noqa: SIM115
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "reference_node", "--config", str(self.configs[i]), "--log-level", log_level,
             *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))

    def start_all(self) -> None:
        for i in range(len(self.configs)):
            self.start(i)
        for i in range(len(self.configs)):
            self.wait_healthy(i)

    def wait_healthy(self, i: int, timeout: float = 120.0) -> None:  # generous: CI machines can be slow
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.procs[i]
            if p is not None and p.poll() is not None:
                raise AssertionError(f"node{i} exited: {self.log(i)[-2000:]}")
            try:
                status, _ = http("GET", self.apis[i] + "/api/v1/health", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"node{i} not healthy after {timeout} s: {self.log(i)[-2000:]}")

    def log(self, i: int) -> str:
        return (self.configs[i].parent / "node.log").read_text(errors="replace")

    def kill(self, i: int) -> None:
        p = self.procs[i]
        assert p is not None
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        self.procs[i] = None

    def __enter__(self) -> Cluster:
        """Start every node (stopping those already up if one fails); `__exit__` stops them all."""
        try:
            self.start_all()
        except BaseException:
            self.stop_all()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def create_zone(self, origin: str, node: int = 0) -> tuple[int, Any]:
        """Create `origin` through `node`'s API, with ns1.<origin> as its primary name server."""
        return http("POST", self.apis[node] + "/api/v1/dns/update", {"create": {
            "origin": origin, "primary_ns": f"ns1.{origin}", "admin": f"hostmaster.{origin}",
            "nameservers": [f"ns1.{origin}"]}})

    def stop_all(self) -> None:
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for i, p in enumerate(self.procs):
            if p is None:
                continue
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            self.procs[i] = None

    def status(self, i: int) -> dict[str, Any]:
        code, body = http("GET", self.apis[i] + "/api/v1/status", timeout=5)
        assert code == 200, body
        return body  # type: ignore[no-any-return]

    def wait_for(self, predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (OSError, AssertionError) as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what} ({last})")
