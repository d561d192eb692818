"""Where certificates point for CRLs, OCSP and the issuer: a development cluster names every node (not
node0 alone), an operator can name one base instead, and the command-line CA writes the node's layout,
so every such URL is a route a node serves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from reference_node.cli import main
from reference_node.cluster import NodePorts, generate
from reference_node.http_api import API

PORTS = [NodePorts(20000 + 10 * i, 20001 + 10 * i, 20002 + 10 * i, 20003 + 10 * i) for i in range(4)]


def pointers(cert: x509.Certificate) -> tuple[list[str], list[str], list[str]]:
    """(CRL URLs, OCSP URLs, issuer URLs) in the certificate's order."""
    (dp,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert dp.full_name is not None
    return ([str(n.value) for n in dp.full_name],
            [str(d.access_location.value) for d in aia if d.access_method == AuthorityInformationAccessOID.OCSP],
            [str(d.access_location.value) for d in aia if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS])


def served(url: str) -> bool:
    """Does the node's router have a route for the URL's path (GET for documents, POST for OCSP)?"""
    app = API(node=None).app  # type: ignore[arg-type]  # building the router does not touch the node
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    method = "POST" if path == "/ocsp" else "GET"
    match = asyncio.run(app.router.resolve(make_mocked_request(method, path, app=app)))
    return match.http_exception is None


def test_a_development_cluster_points_at_every_node(tmp_path: Path) -> None:
    (config, *_) = generate(tmp_path, 4, 3, ports=PORTS)
    leaf, inter = x509.load_pem_x509_certificates((config.parent / "tls.crt").read_bytes())
    apis = [f"http://127.0.0.1:{p.api}" for p in PORTS]
    assert pointers(leaf) == ([a + "/crl/issuing.crl" for a in apis], [a + "/ocsp" for a in apis],
                              [a + "/ca/intermediate.der" for a in apis])
    assert pointers(inter) == ([a + "/crl/root.crl" for a in apis], [a + "/ocsp" for a in apis],
                               [a + "/ca/root.der" for a in apis])
    assert all(served(u) for urls in pointers(leaf) for u in urls)


def test_an_operator_names_one_base_for_all_nodes(tmp_path: Path) -> None:
    (config, *_) = generate(tmp_path, 4, 3, ports=PORTS, pki_urls=("http://pki.example.net/",))
    leaf, _ = x509.load_pem_x509_certificates((config.parent / "tls.crt").read_bytes())
    assert pointers(leaf) == (["http://pki.example.net/crl/issuing.crl"], ["http://pki.example.net/ocsp"],
                              ["http://pki.example.net/ca/intermediate.der"])


def test_cluster_init_refuses_a_pki_url_that_is_not_a_base_url(tmp_path: Path) -> None:
    from reference_node.cluster import init_cluster

    with pytest.raises(ValueError, match="--pki-url"):
        init_cluster(tmp_path / "c", 4, 3, "tcp", ("ftp://pki.example.net",))


def test_the_command_line_ca_writes_the_nodes_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTCHAIN_OPERATOR_KEY", str(tmp_path / "operator.key"))
    d = tmp_path / "ca"
    assert main(["ca", "init", "--dir", str(d), "--base-url", "http://pki.example.org"]) == 0
    assert main(["ca", "issue", "--dir", str(d), "--name", "www.example.org", "--out", str(tmp_path / "w.pem")]) == 0
    leaf = x509.load_pem_x509_certificate((tmp_path / "w.pem").read_bytes())
    inter = x509.load_pem_x509_certificate((d / "intermediate.pem").read_bytes())
    assert pointers(leaf) == (["http://pki.example.org/crl/issuing.crl"], ["http://pki.example.org/ocsp"],
                              ["http://pki.example.org/ca/intermediate.der"])
    assert pointers(inter)[0] == ["http://pki.example.org/crl/root.crl"]
    assert pointers(inter)[2] == ["http://pki.example.org/ca/root.der"]
    assert all(served(u) for urls in (*pointers(leaf), *pointers(inter)) for u in urls)
