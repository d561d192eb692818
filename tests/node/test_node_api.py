"""The HTTP API surface of a real 4-validator cluster on 127.0.0.1: the WebSocket streams deliver
events when things happen, /api/v1/openapi.json is a valid OpenAPI 3 document covering every route,
and neither schemathesis (driven by that document) nor structured fuzzing of the request bodies
gets a 5xx out of a node."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from node_harness import Cluster, http

from reference_node import cli
from reference_node.http_api import API, STREAMS, openapi_document

EXAMPLES = int(os.environ.get("TRUSTCHAIN_API_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("api-cluster"), nodes=4, threshold=3, timeout="1s", dns_listeners=False)
    with c:
        yield c


# ------------------------------------------------------------------------------------ WebSocket streams


def _ws_url(api: str, topic: str) -> str:
    return api.replace("http://", "ws://") + f"/stream/{topic}"


async def _collect(api: str, write_api: str, tmp: Path) -> dict[str, list[dict[str, Any]]]:
    """Subscribe to every stream on `api`, cause DNS, CT, CA and KV activity through `write_api`."""
    events: dict[str, list[dict[str, Any]]] = {t: [] for t in STREAMS}
    async with aiohttp.ClientSession() as session:
        sockets = {t: await session.ws_connect(_ws_url(api, t)) for t in STREAMS}

        async def reader(topic: str) -> None:
            async for msg in sockets[topic]:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    events[topic].append(json.loads(msg.data))

        readers = [asyncio.create_task(reader(t)) for t in STREAMS]
        await asyncio.sleep(0.2)  # subscriptions registered before the writes
        async with session.post(write_api + "/api/v1/dns/update", json={"create": {
                "origin": "ws.example.", "primary_ns": "ns1.ws.example.", "admin": "hostmaster.ws.example."}}) as r:
            assert r.status == 200, await r.text()
        async with session.post(write_api + "/api/v1/kv", json={"op": "put", "key": "ws", "value": "1"}) as r:
            assert r.status == 200, await r.text()
        code = await asyncio.to_thread(cli.main, ["node", "--node", write_api, "--json", "cert", "request",
                                                  "www.ws.example", "--key-out", str(tmp / "ws.key"),
                                                  "--out", str(tmp / "ws.pem")])
        assert code == 0
        # the issuance appended the certificate to the CT log, but only CT requests publish on /stream/ct
        # (see docs/node.md): submit the chain, which answers "duplicate" and publishes the tree size
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        der = x509.load_pem_x509_certificate((tmp / "ws.pem").read_bytes()).public_bytes(serialization.Encoding.DER)
        async with session.get(write_api + "/ca/intermediate.der") as r:
            inter = await r.read()  # the log accepts chains to the root: the leaf and its issuer
        async with session.post(write_api + "/api/v1/ct/submit",
                                json={"chain": [base64.b64encode(d).decode() for d in (der, inter)]}) as r:
            assert r.status == 200 and (await r.json())["status"] == "duplicate"

        def done() -> bool:
            return (any(e.get("event") == "issued" for e in events["certificates"])
                    and any(e.get("tree_size", 0) >= 1 for e in events["ct"])
                    and any("kv" in e.get("targets", []) for e in events["consensus"])
                    and any(e.get("op") == "create" and e.get("origin") == "ws.example." for e in events["dns"]))

        for _ in range(200):
            if done():
                break
            await asyncio.sleep(0.05)
        for ws in sockets.values():
            await ws.close()
        for task in readers:
            task.cancel()
    return events


def test_websocket_streams_deliver_events(cluster: Cluster, tmp_path: Path) -> None:
    events = asyncio.run(asyncio.wait_for(_collect(cluster.apis[2], cluster.apis[0], tmp_path), 60))
    assert all(e["stream"] == t for t in STREAMS for e in events[t])

    dns = [e for e in events["dns"] if e["op"] == "create" and e["origin"] == "ws.example."]
    assert dns and dns[0]["seq"] > 0 and dns[0]["status"] == "ok" and dns[0]["serial"] == 1, events["dns"]

    executed = [e for e in events["consensus"] if e["event"] == "executed"]
    assert executed and {"dns", "kv", "ca"} <= {t for e in executed for t in e["targets"]}, events["consensus"]
    seqs = [e["seq"] for e in executed]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # in order, each sequence number once
    assert all(len(e["batch_digest"]) == 64 and e["requests"] == len(e["targets"]) for e in executed)

    from cryptography import x509

    serial = f"{x509.load_pem_x509_certificate((tmp_path / 'ws.pem').read_bytes()).serial_number:x}"
    certs = events["certificates"]
    kinds = [(e["event"], e["serial"].lstrip("0")) for e in certs]
    assert ("pending", serial) in kinds and ("issued", serial) in kinds, certs
    assert kinds.index(("pending", serial)) < kinds.index(("issued", serial))
    assert max(e["tree_size"] for e in events["ct"]) >= 1  # the issued certificate was logged


def test_websocket_revocation_event_and_unknown_stream(cluster: Cluster, tmp_path: Path) -> None:
    api = cluster.apis[1]
    zone = ["node", "--node", api, "dns", "update", "rv.example", "--create"]
    assert cli.main(zone) == 0
    assert cli.main(["node", "--node", api, "cert", "request", "www.rv.example", "--key-out", str(tmp_path / "k"),
                     "--out", str(tmp_path / "c.pem")]) == 0
    from cryptography import x509

    serial = f"{x509.load_pem_x509_certificate((tmp_path / 'c.pem').read_bytes()).serial_number:x}"

    async def go() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(_ws_url(cluster.apis[3], "certificates"))
            await asyncio.sleep(0.2)
            async with session.post(api + "/api/v1/cert/revoke", json={"serial": serial, "reason": 4}) as r:
                assert r.status == 200, await r.text()
            got = [json.loads((await ws.receive(timeout=20)).data)]
            await ws.close()
            async with session.get(api + "/stream/nothing") as r:
                assert r.status == 404
            return got

    got = asyncio.run(go())
    assert got[0]["event"] == "revoked" and got[0]["serial"].lstrip("0") == serial and got[0]["reason"] == 4


# -------------------------------------------------------------------------------------------- OpenAPI


def test_openapi_document_is_valid_and_covers_every_route(cluster: Cluster) -> None:
    code, served = http("GET", cluster.apis[0] + "/api/v1/openapi.json")
    assert code == 200 and served == openapi_document()
    assert served["openapi"].startswith("3.")
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(served)  # raises on any structural error (e.g. an undeclared path parameter)

    app = API(node=None).app  # type: ignore[arg-type]  # building the router does not touch the node
    documented = {(path, method.upper()) for path, ops in served["paths"].items() for method in ops}
    streams = set(served["x-websocket-streams"])
    missing = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if route.method == "HEAD" or path is None:
            continue
        path = path.replace("{path:.+}", "{path}")
        if path.startswith("/stream/"):
            if path not in streams:
                missing.append(f"stream {path}")
        elif (path, route.method) not in documented:
            missing.append(f"{route.method} {path}")
    assert not missing, f"routes missing from the OpenAPI document: {missing}"
    assert streams == {f"/stream/{t}" for t in STREAMS}
    for path, ops in served["paths"].items():  # every templated segment is a declared path parameter
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, path


def _schemathesis() -> list[str]:
    try:
        import schemathesis  # noqa: F401
    except ImportError:
        if shutil.which("schemathesis") is None:
            pytest.skip("schemathesis not installed (pip install schemathesis)")
        return ["schemathesis"]
    return [sys.executable, "-m", "schemathesis.cli"]


def test_schemathesis_finds_no_server_errors(cluster: Cluster, tmp_path: Path) -> None:
    cmd = [
        *_schemathesis(), "run", cluster.apis[3] + "/api/v1/openapi.json", "--checks", "not_a_server_error",
        "--max-examples", str(EXAMPLES), "--seed", "20240501", "--workers", "2", "--request-timeout", "30",
        "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all", "--warnings", "off",
        "--report", "junit", "--report-dir", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=80, check=False, cwd=tmp_path,
                         env=dict(os.environ, SCHEMATHESIS_TELEMETRY="false", NO_COLOR="1"))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-6000:]
    assert "passed" in text and "Server error" not in text, text[-3000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", text)
    tested = re.search(r"Tested: (\d+)", text)
    assert selected and tested and selected[1] == selected[2] == tested[1], text[-3000:]  # every operation ran
    assert int(tested[1]) >= 20


# ------------------------------------------------------------------------- structured body fuzzing

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)
NAMEISH = st.from_regex(r"\A([a-z0-9*_-]{0,8}\.){0,3}[a-z]{0,5}\.?\Z") | st.text(max_size=20)
FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "/api/v1/cert/challenge": {"names": st.lists(NAMEISH, max_size=3) | JSON},
    "/api/v1/cert/request": {"csr": st.text(max_size=50) | JSON, "names": st.lists(NAMEISH, max_size=3),
                             "proofs": st.lists(st.text(max_size=20), max_size=3), "wait_s": st.integers(-5, 2),
                             "identity": JSON, "payment_ref": JSON, "lifetime_s": JSON},
    "/api/v1/cert/renew": {"serial": st.text("0123456789abcdefx", max_size=50) | JSON, "csr": JSON,
                           "proofs": JSON, "wait_s": st.integers(-5, 2)},
    "/api/v1/cert/revoke": {"serial": st.text("0123456789abcdefx", max_size=50) | JSON,
                            "reason": st.integers(-3, 12) | st.text(max_size=20) | JSON},
    "/api/v1/dns/update": {
        "create": st.fixed_dictionaries({}, optional={"origin": NAMEISH, "primary_ns": NAMEISH, "admin": NAMEISH,
                                                      "nameservers": st.lists(NAMEISH, max_size=2) | JSON,
                                                      "ttl": JSON}) | JSON,
        "update": st.fixed_dictionaries({}, optional={"origin": NAMEISH, "ops": st.lists(st.fixed_dictionaries(
            {}, optional={"op": st.sampled_from(["add", "replace", "delete_rrset", "delete_name", "x"]),
                          "name": NAMEISH, "type": st.sampled_from(["A", "AAAA", "TXT", "NS", "CNAME", "SOA", "X"]),
                          "ttl": st.integers(-1, 2**32) | JSON, "values": st.lists(st.text(max_size=30), max_size=2)
                          | JSON}), max_size=3) | JSON}) | JSON},
    "/api/v1/ct/submit": {"chain": st.lists(st.text("ABCDEFabcdef0123456789+/=", max_size=40), max_size=2) | JSON},
    "/api/v1/kv": {"op": st.sampled_from(["put", "get", "delete", "append", "x"]) | JSON, "key": JSON,
                   "value": JSON},
}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    path = draw(st.sampled_from(sorted(FIELDS)))
    fields = FIELDS[path]
    body = draw(st.fixed_dictionaries({}, optional=fields))
    body.update(draw(st.dictionaries(st.text(max_size=6), JSON, max_size=2)))
    return path, body


@settings(max_examples=EXAMPLES * 4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(req=requests(), node=st.integers(0, 3))
def test_structured_bodies_never_give_5xx(cluster: Cluster, req: tuple[str, dict[str, Any]], node: int) -> None:
    path, body = req
    code, res = http("POST", cluster.apis[node] + path, body, timeout=60)
    assert code < 500, (path, body, code, res)
    if code >= 400:
        assert isinstance(res, dict) and res.get("field") and res.get("error"), (path, body, code, res)


def test_lone_surrogate_is_a_400_naming_the_body(cluster: Cluster) -> None:
    code, res = http("POST", cluster.apis[0] + "/api/v1/kv", {"op": "put", "key": "\ud800x", "value": ""})
    assert code == 400 and res["field"] == "body" and "surrogate" in res["error"], res
    code, res = http("POST", cluster.apis[0] + "/api/v1/cert/request", {"csr": "\udfff", "names": ["a.b"],
                                                                       "proofs": ["x"]})
    assert code == 400 and res["field"] == "body", res
