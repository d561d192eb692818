"""Renewal of a validator's TLS node certificate through its own CA, driven by the node.

The node certificate (SAN `validator-<i>.<node_domain>`) authenticates the QUIC peer links and the DoQ
listener. It is renewed at 2/3 of its lifetime by ordering a certificate request signed with the
consensus key, waiting for the FROST-signed certificate, writing key and chain atomically and
installing them in the transport and in every registered listener.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.app import trustchain as tcapp
from trustchain.ca import commands as cacommands
from trustchain.ca import names as canames
from trustchain.ca import rotation
from trustchain.ca import x509 as cax509

if TYPE_CHECKING:
    from reference_node.runtime import Node

__all__ = ["NodeCertificates", "newest_pair", "renewed_paths", "replace_file"]

log = logging.getLogger("trustchain.node")


class NodeCertificates:
    """The node certificate of `node`: where it is, what it is, and its renewal loop."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.name = canames.node_name(node.id, node.genesis.node_domain)
        self.renewals = 0
        # called with (chain PEM, key PEM) after each renewal, e.g. to reload the DoQ listener
        self.listeners: list[Callable[[bytes, bytes], None]] = []
        self._validator_lock = asyncio.Lock()  # requests signed with the consensus key (node certificate)

    def paths(self) -> tuple[Path, Path] | None:
        """Where the current certificate and key are: the renewed pair in the data directory once there
        is one, else the configured pair (which may be mounted read-only, and is never written)."""
        c = self.node.config.consensus
        if c.tls_cert is None or c.tls_key is None:
            return None
        return newest_pair((c.tls_cert, c.tls_key), renewed_paths(self.node.config.storage.path))

    def current(self) -> x509.Certificate | None:
        """This node's current TLS node certificate (the first one in `consensus.tls_cert`)."""
        paths = self.paths()
        if paths is None:
            return None
        try:
            return x509.load_pem_x509_certificates(paths[0].read_bytes())[0]
        except (OSError, ValueError):
            return None

    async def renewer(self) -> None:
        """Renew the node certificate at 2/3 of its lifetime (`rotation.renewal_time`), through consensus,
        then sleep until the new one is due. Failures are retried after 1/20 of the lifetime (1 s..60 s)."""
        while True:
            cert = self.current()
            if cert is None or self.name not in cax509.dns_names(cert):
                log.warning("node certificate: %s is not a node certificate for %s; not renewing it",
                            self.node.config.consensus.tls_cert, self.name, extra={"event": "node_cert_unusable"})
                return
            nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
            due = rotation.renewal_time(nb, na)
            delay = (due - dt.datetime.now(dt.UTC)).total_seconds()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.node.halted is not None:
                return
            try:
                await self.renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                retry = min(60.0, max(1.0, (na - nb).total_seconds() / 20))
                log.warning("node certificate renewal failed (retry in %.0f s): %s", retry, exc, extra={
                    "event": "node_cert_renewal_failed", "fields": {"retry_s": retry, "error": str(exc)}})
                await asyncio.sleep(retry)

    async def renew(self, timeout_s: float = 60.0) -> x509.Certificate:
        """Order a certificate request for this node's name, signed with the consensus key (the CA's
        node-name rule: only validator i's key may request `validator-<i>.<node_domain>`), wait for the
        FROST-signed certificate, store key and chain, and install them in the transport."""
        node = self.node
        current = self.paths()
        assert current is not None
        paths = renewed_paths(node.config.storage.path)
        paths[0].parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ed25519.Ed25519PrivateKey.generate()
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(self.name)]), critical=False)
               .sign(key, None))
        lifetime_s = max(10, node.config.ca.node_cert_lifetime_us // 1_000_000)
        command = cacommands.request_command(cacommands.IssueRequest(
            csr.public_bytes(serialization.Encoding.DER), (self.name,), ("",), f"node {self.name}", "",
            lifetime_s))
        deadline = time.monotonic() + timeout_s
        async with self._validator_lock:
            result = await node.submit_as(node.signer, tcapp.CA, command, deadline, timeout_s)
        res = tcapp.decode_routed(result, cacommands.decode_result)
        if isinstance(res, tcapp.RouteError) or res.status != cacommands.STATUS_PENDING:
            raise RuntimeError(f"node certificate request refused: {res.detail}")
        pending_id = res.pending_id
        done = await node.wait_certificate(pending_id, max(0.1, deadline - time.monotonic()))
        # the serial is fixed by the validators' randomness after the request; a finalize executed before we
        # started waiting is found by the request's pending id
        serial = done.serial if done is not None else (res.serial or node.app.ca.request_serial(pending_id) or b"")
        serial_hex = serial.hex()
        issued = node.app.ca.issued.get(serial)
        if issued is None:
            raise RuntimeError(f"node certificate for request {pending_id} not signed within {timeout_s:.0f} s")
        cert = x509.load_der_x509_certificate(issued.certificate_der)
        if node.app.ca.issuer_certificates:
            chain = [x509.load_der_x509_certificate(node.app.ca.issuer_certificates[-1])]
        else:
            chain = x509.load_pem_x509_certificates(current[0].read_bytes())[1:]
        chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *chain])
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        # Each file is replaced atomically. A crash between the two leaves a key that does not match the
        # certificate: the QUIC transport then refuses to start (`Identity`) instead of using either.
        replace_file(paths[1], key_pem, 0o600)
        replace_file(paths[0], chain_pem, 0o644)
        node.transport.install_identity(chain_pem, key_pem)
        for listener in self.listeners:
            listener(chain_pem, key_pem)
        self.renewals += 1
        log.info("node certificate renewed", extra={"event": "node_cert_renewed", "fields": {
            "serial": serial_hex, "not_after": cert.not_valid_after_utc.isoformat(), "name": self.name}})
        node.pubsub.publish("certificates", {"event": "node_renewed", "serial": serial_hex,
                                             "not_after": cert.not_valid_after_utc.isoformat()})
        return cert


def renewed_paths(storage_path: Path) -> tuple[Path, Path]:
    """Renewed node certificates live in the data directory, which is writable wherever the node runs."""
    return storage_path / "tls" / "node.crt", storage_path / "tls" / "node.key"


def _not_after(path: Path) -> dt.datetime | None:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())[0].not_valid_after_utc
    except (OSError, ValueError, IndexError):
        return None


def newest_pair(configured: tuple[Path, Path], renewed: tuple[Path, Path]) -> tuple[Path, Path]:
    """The renewed pair if it is readable and lasts longer than the configured one (an operator who
    installs a newer certificate in the configuration wins), else the configured pair."""
    fresh, current = _not_after(renewed[0]), _not_after(configured[0])
    if fresh is not None and renewed[1].exists() and (current is None or fresh > current):
        return renewed
    return configured


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
