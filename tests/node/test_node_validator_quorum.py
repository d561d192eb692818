"""Against a real 4-validator cluster: what the validator set does as a whole needs a quorum (3 of 4).

Each validator's operator casts its node's vote with `trustchain-cli node validators ...` (the node's
loopback API and its operator token); a certificate is revoked without its subscriber once three
validators voted, and one validator alone, by its vote or by writing with its own account key, cannot
change the nodes' own zone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request
from node_harness import Cluster, http

from reference_node import cli, http_validators
from reference_node.genesis import Genesis, load_seed
from trustchain.accounts import Ed25519AccountSigner, account_id
from trustchain.app import trustchain as tcapp
from trustchain.ca import commands as cacommands
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import AddRecords, ZoneUpdate
from trustchain.encoding import decode

ZONE = "quorum.example."
NODE_ZONE = "nodes.trustchain.internal."


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("quorum"), nodes=4, threshold=3, timeout="1s", dns_listeners=False) as c:
        yield c


def _token(cluster: Cluster, i: int) -> str:
    return str(cluster.configs[i].parent / "data" / "operator.token")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = cli.main([*argv, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def _vote(capsys: pytest.CaptureFixture[str], cluster: Cluster, i: int, *command: str) -> tuple[int, Any, str]:
    return _cli(capsys, "node", "--node", cluster.apis[i], "validators", *command, "--operator-token",
                _token(cluster, i))


def _certificate(cluster: Cluster, serial: str, node: int) -> dict[str, Any]:
    code, doc = http("GET", cluster.apis[node] + f"/api/v1/cert/{serial}")
    assert code == 200, doc
    return doc  # type: ignore[no-any-return]


def test_a_certificate_is_revoked_by_a_quorum_of_validators(cluster: Cluster, capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    assert cli.main(["node", "--node", cluster.apis[0], "dns", "update", ZONE, "--create"]) == 0
    capsys.readouterr()
    code, issued, err = _cli(capsys, "node", "--node", cluster.apis[0], "cert", "request", "www.quorum.example",
                             "--key-out", str(tmp_path / "www.key"))
    assert code == 0 and issued["status"] == "issued", err
    serial = issued["serial"]

    # the operator endpoint: loopback and the node's token only
    body = {"target": "ca", "command": "AAAA"}
    code, res = http("POST", cluster.apis[0] + "/api/v1/validators/propose", body)
    assert code == 403 and res["field"] == "authorization", res
    code, _, err = _cli(capsys, "node", "--node", cluster.apis[0], "validators", "revoke", serial,
                        "--operator-token", _token(cluster, 1))  # node1's token does not open node0
    assert code == 3 and "HTTP 403" in err and "authorization" in err, err

    first, second = (_vote(capsys, cluster, i, "revoke", serial, "--reason", "keyCompromise") for i in (0, 1))
    assert (first[0], first[1]["status"], first[1]["votes"], first[1]["threshold"]) == (0, "recorded", 1, 3), first
    assert (second[0], second[1]["status"], second[1]["votes"]) == (0, "recorded", 2), second
    again = _vote(capsys, cluster, 1, "revoke", serial, "--reason", "keyCompromise")
    assert again[1]["status"] == "duplicate" and again[1]["votes"] == 2, again
    code, listed, _ = _cli(capsys, "node", "--node", cluster.apis[3], "validators", "proposals")
    assert [(p["target"], p["op"], p["voters"]) for p in listed["proposals"]] == [("ca", "revoke", [0, 1])]
    assert _certificate(cluster, serial, 2)["revoked"] is False  # two of four validators are not enough

    code, passed, err = _vote(capsys, cluster, 2, "revoke", serial, "--reason", "keyCompromise")
    assert code == 0 and passed["status"] == "executed" and passed["votes"] == 3, err
    assert passed["result"]["status"] == "ok"
    for node in range(4):
        cluster.wait_for(lambda node=node: _certificate(cluster, serial, node)["revoked"] is True,
                         what=f"revocation on node{node}")
    late = _vote(capsys, cluster, 3, "revoke", serial, "--reason", "keyCompromise")
    assert late[1]["status"] == "done", late


def _propose(cluster: Cluster, i: int, body: Any) -> tuple[int, Any]:
    token = Path(_token(cluster, i)).read_text().strip()
    request = urllib.request.Request(cluster.apis[i] + "/api/v1/validators/propose", json.dumps(body).encode(),
                                     {"content-type": "application/json", "authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_bad_votes_are_refused_naming_the_field(cluster: Cluster) -> None:
    challenge = base64.b64encode(cacommands.challenge_command(["www.quorum.example"])).decode()
    for body, status, field in (
        ([], 400, "body"), ({"target": "kv", "command": "AAAA"}, 400, "target"),
        ({"target": "ca", "command": "not base64!"}, 400, "command"), ({"target": "ca"}, 400, "command"),
        ({"withdraw": "zz"}, 400, "withdraw"), ({"withdraw": "00" * 32}, 422, "digest"),
        ({"target": "ca", "command": challenge}, 422, "target"),  # not an operation of the validator set
    ):
        code, res = _propose(cluster, 2, body)
        assert (code, res["field"]) == (status, field), (body, res)
    # a quorum for an operation the application then refuses: it ran (once), and says why not
    unknown = {"target": "ca", "command": base64.b64encode(cacommands.revoke_command(0xDEAD, 1)).decode()}
    assert [_propose(cluster, i, unknown)[1]["status"] for i in (0, 1)] == ["recorded", "recorded"]
    code, res = _propose(cluster, 2, unknown)
    assert (code, res["status"], res["field"]) == (422, "executed", "serial"), res


class ValidatorAccount:
    """Writes signed with a validator's own consensus key: its account, as the node itself uses it."""

    def __init__(self, cluster: Cluster, i: int) -> None:
        self.cluster = cluster
        self.signer = Ed25519AccountSigner(load_seed(cluster.configs[i].parent / "consensus.key"))
        self.cluster_id = Genesis.load(cluster.dir / "genesis.json").cluster_id
        self.n = 0

    def post(self, target: str, payload: bytes) -> tuple[int, Any]:
        self.n += 1
        account = account_id(self.signer.key)
        op = tcapp.signed_operation(self.signer, account, self.cluster_id, target, payload,
                                    nonce=hashlib.sha256(account + self.n.to_bytes(8, "big")).digest()[:16],
                                    deadline_us=time.time_ns() // 1000 + 300_000_000)
        write = decode(tcapp.Routed, op).payload
        return http("POST", self.cluster.apis[0] + "/api/v1/write", {"write": base64.b64encode(write).decode()})


def test_one_validator_alone_cannot_change_the_node_zone(cluster: Cluster,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    create = dnsapp.create_command(NODE_ZONE, primary_ns=f"ns1.{NODE_ZONE}", admin=f"hostmaster.{NODE_ZONE}",
                                   nameservers=[f"ns1.{NODE_ZONE}"])
    lone = ValidatorAccount(cluster, 3)
    code, res = lone.post(tcapp.DNS, create)  # validator 3 writes with its own key
    assert code == 422 and res["field"] == "create.origin" and "validators' domain" in res["reason"], res
    code, res, err = _vote(capsys, cluster, 3, "dns", NODE_ZONE, "--create")  # or votes alone
    assert code == 0 and res["status"] == "recorded" and res["votes"] == 1, err
    time.sleep(1.0)
    assert NODE_ZONE not in cluster.status(0)["dns"]["zones"]

    for i in (0, 1):
        code, res, err = _vote(capsys, cluster, i, "dns", NODE_ZONE, "--create")
        assert code == 0, err
    assert res["status"] == "executed" and res["result"]["origin"] == NODE_ZONE, res
    for node in range(4):
        cluster.wait_for(lambda node=node: NODE_ZONE in cluster.status(node)["dns"]["zones"], what=f"zone on {node}")

    # now that it exists: one validator's write is refused, and its vote alone changes nothing
    update = dnsapp.update_command(ZoneUpdate(NODE_ZONE, (AddRecords(f"validator-3.{NODE_ZONE}", "A", 300,
                                                                     ("192.0.2.66",)),)))
    code, res = lone.post(tcapp.DNS, update)
    assert code == 422 and res["field"] == "update.origin", res
    code, res, err = _vote(capsys, cluster, 3, "dns", NODE_ZONE, "--add", "validator-3 300 A 192.0.2.66")
    assert code == 0 and res["status"] == "recorded", err
    time.sleep(1.0)
    code, answer = http("GET", cluster.apis[2] + f"/api/v1/dns/resolve?domain=validator-3.{NODE_ZONE}&type=A")
    assert code == 200 and "192.0.2.66" not in json.dumps(answer), answer
    code, res, err = _vote(capsys, cluster, 3, "withdraw", res["digest"])
    assert code == 0 and res["status"] == "withdrawn" and res["votes"] == 0, err


@pytest.mark.parametrize(("peer", "token", "allowed"), [
    (("127.0.0.1", 5000), "secret", True), (("::1", 5000, 0, 0), "secret", True),
    (("192.0.2.7", 5000), "secret", False), (("127.0.0.1", 5000), "wrong", False), (("127.0.0.1", 5000), "", False),
    (None, "secret", False),
])
def test_only_the_operator_on_the_node_host_may_vote(peer: Any, token: str, allowed: bool) -> None:
    transport = mock.Mock()
    transport.get_extra_info.return_value = peer
    request = make_mocked_request("POST", "/api/v1/validators/propose", transport=transport,
                                  headers={"Authorization": f"Bearer {token}"} if token else {})
    denied = http_validators._Validators(mock.Mock(), "secret")._operator(request)
    assert (denied is None) == allowed
    if denied is not None:
        assert denied.status == 403 and json.loads(denied.text or "")["field"] == "authorization"
