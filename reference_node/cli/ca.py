"""`trustchain-cli ca ...`: run the threshold CA in one process (all validators simulated).

For operators trying TrustChain and for tests: `init` runs the DKG among N simulated validators and
writes the root and intermediate certificates plus each validator's key shares encrypted at rest
(AES-256-GCM under the operator key). `issue`, `revoke`, `crl` and `ocsp` load T shares and sign
through FROST; requests go through the same replicated `CAApplication` the validators run, with the
CLI's clock as consensus time and a single local "account" that publishes its own dns-01 records.
Each issued certificate comes with `CERT.proof`: a commit certificate (2f+1 signed commits over the
batch holding the finalize command) from the simulated validators, which `cert verify` checks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.server
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from reference_node.cli import EXIT_IO, EXIT_OK, EXIT_USAGE, CLIError
from reference_node.cluster import run_dkg
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.ca import caa, crl, frost, issuance, ocsp, ownership, sharebox
from trustchain.ca import commands as cacommands
from trustchain.ca import consensus_time as catime
from trustchain.ca import policy as capolicy
from trustchain.ca import records as carecords
from trustchain.ca import x509 as cax509
from trustchain.consensus import messages as pbft
from trustchain.crypto.signing import Ed25519Signer
from trustchain.encoding import DecodeError, encode
from trustchain.quorum import check_signing_threshold, quorum_size

CONFIG = "ca.json"
STATE = "state.bin"
OPERATOR_KEY = "operator.key"
GROUPS = ("root", "issuing")
REASONS = {v.lower(): k for k, v in carecords.REVOCATION_REASONS.items()}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _us(when: dt.datetime) -> int:
    return catime.datetime_us(when)


def parse_lifetime(text: str) -> dt.timedelta:
    m = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not m:
        raise CLIError(f"--lifetime: {text!r} is not a duration like 3600, 90m, 24h or 7d")
    n = int(m.group(1))
    return dt.timedelta(seconds=n * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)])


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TrustChain"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


# --- the CA directory ---------------------------------------------------------------------------


@dataclass
class CADir:
    path: Path
    config: dict[str, Any]
    operator_key: bytes

    @classmethod
    def load(cls, path: str) -> CADir:
        p = Path(path)
        if not (p / CONFIG).is_file():
            raise CLIError(f"--dir: {p} is not a CA directory (no {CONFIG}; run `trustchain-cli ca init`)")
        try:
            config = json.loads((p / CONFIG).read_text())
            key = bytes.fromhex((p / OPERATOR_KEY).read_text().strip())
        except (ValueError, json.JSONDecodeError) as exc:
            raise CLIError(f"--dir: {p}: corrupt {CONFIG} or {OPERATOR_KEY}: {exc}") from None
        if len(key) != 32:
            raise CLIError(f"--dir: {p / OPERATOR_KEY}: operator key must be 32 bytes")
        return cls(p, config, key)

    def public(self, group: str) -> frost.PublicKeyPackage:
        g = self.config[group]
        return frost.PublicKeyPackage(
            bytes.fromhex(g["group_key"]),
            {int(i): bytes.fromhex(v) for i, v in g["verifying_shares"].items()},
            int(self.config["threshold"]),
        )

    def profile(self, group: str) -> cax509.IssuerProfile:
        g = self.config[group]
        urls = self.config["urls"]
        return cax509.IssuerProfile(
            _name(g["common_name"]),
            bytes.fromhex(g["group_key"]),
            urls[f"{group}_crl"],
            urls["ocsp"],
            urls[f"{group}_issuer"],
        )

    def key_package(self, group: str, i: int) -> frost.KeyPackage:
        blob = (self.path / "shares" / f"validator-{i}.{group}.share").read_bytes()
        try:
            return sharebox.load_key_package(self.operator_key, f"validator-{i}", group, blob)
        except sharebox.ShareboxError as exc:
            raise CLIError(f"share of validator {i} ({group}) does not decrypt: {exc}", EXIT_IO) from None

    def signer(self, group: str, quorum: list[int] | None = None) -> cax509.SignFunction:
        """FROST with T shares loaded from disk (validators 1..T unless ``quorum`` says otherwise)."""
        t = int(self.config["threshold"])
        ids = quorum or list(range(1, t + 1))
        keys = {i: self.key_package(group, i) for i in ids}
        public = self.public(group)

        return lambda msg: frost.sign_with_quorum(keys, public, msg, secrets.token_bytes)

    def consensus_signers(self) -> list[Ed25519Signer]:
        out = []
        for i in range(1, int(self.config["validators"]) + 1):
            blob = (self.path / "consensus" / f"validator-{i}.key").read_bytes()
            seed = sharebox.unwrap_at_rest(self.operator_key, f"validator-{i}", "consensus", blob)
            out.append(Ed25519Signer(seed))
        return out

    def operator_account(self) -> Ed25519Signer:
        return Ed25519Signer(hashlib.sha256(b"trustchain-cli operator account" + self.operator_key).digest())

    def app(self, dns: caa.DNSLookup | None = None) -> issuance.CAApplication:
        policy = capolicy.CAPolicy(
            issuer=self.profile("issuing"),
            ca_domain=self.config["ca_domain"],
            root_keys=(self.public("root").group_public_key,),
            operators=(self.operator_account().public_key,),
            max_lifetime=dt.timedelta(days=398),
            require_payment=False,
        )
        app = issuance.CAApplication(policy, dns or caa.StaticDNS())
        if (self.path / STATE).is_file():
            app.restore((self.path / STATE).read_bytes())
        return app

    def save(self, app: issuance.CAApplication) -> None:
        tmp = self.path / (STATE + ".tmp")
        tmp.write_bytes(app.snapshot())
        tmp.replace(self.path / STATE)
        (self.path / CONFIG).write_text(json.dumps(self.config, indent=2, sort_keys=True))

    def next_seq(self) -> int:
        self.config["seq"] = int(self.config.get("seq", 0)) + 1
        return int(self.config["seq"])


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def cmd_init(args: argparse.Namespace) -> int:
    n, t = args.validators, args.threshold
    if n < 4:
        raise CLIError("--validators: PBFT needs at least 4 validators (n = 3f+1)")
    problem = check_signing_threshold(n, t)
    if problem is not None:
        raise CLIError(f"--threshold: {problem}")
    d = Path(args.dir)
    if (d / CONFIG).exists() and not args.force:
        raise CLIError(f"--dir: {d} already holds a CA (use --force to overwrite)")
    (d / "shares").mkdir(parents=True, exist_ok=True)
    (d / "consensus").mkdir(exist_ok=True)
    operator_key = secrets.token_bytes(32)
    _write_private(d / OPERATOR_KEY, operator_key.hex().encode() + b"\n")
    base = args.base_url.rstrip("/")
    config: dict[str, Any] = {
        "validators": n,
        "threshold": t,
        "ca_domain": args.ca_domain,
        "seq": 0,
        "crl_number": 0,
        "urls": {
            "ocsp": f"{base}/ocsp",
            "root_crl": f"{base}/root.crl",
            "issuing_crl": f"{base}/issuing.crl",
            "root_issuer": f"{base}/root.der",
            "issuing_issuer": f"{base}/issuing.der",
        },
    }
    for group, cn in (("root", args.root_name), ("issuing", args.issuing_name)):
        keys, public = run_dkg(n, t, f"trustchain-cli/{group}".encode())
        config[group] = {
            "common_name": cn,
            "group_key": public.group_public_key.hex(),
            "verifying_shares": {str(i): v.hex() for i, v in public.verifying_shares.items()},
        }
        for i, kp in keys.items():
            blob = sharebox.store_key_package(operator_key, f"validator-{i}", group, kp, secrets.token_bytes)
            _write_private(d / "shares" / f"validator-{i}.{group}.share", blob)
    cluster = []
    for i in range(1, n + 1):
        seed = secrets.token_bytes(32)
        cluster.append(Ed25519Signer(seed).public_key.hex())
        blob = sharebox.wrap_at_rest(operator_key, f"validator-{i}", "consensus", seed, secrets.token_bytes)
        _write_private(d / "consensus" / f"validator-{i}.key", blob)
    config["cluster"] = cluster  # consensus (PBFT) keys: what `cert verify --cluster` checks proofs against
    (d / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    (d / STATE).unlink(missing_ok=True)
    ca = CADir.load(str(d))
    now = _now()
    root_profile = ca.profile("root")
    root = cax509.issue(
        cax509.root_tbs(root_profile.name, root_profile.public_key, now), ca.signer("root"), root_profile.public_key
    )
    issuing_profile = ca.profile("issuing")
    inter = cax509.issue(
        cax509.intermediate_tbs(issuing_profile.name, issuing_profile.public_key, root_profile, now, 1),
        ca.signer("root", list(range(n - t + 1, n + 1))),  # a different quorum signs, to show any T suffice
        root_profile.public_key,
    )
    (d / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (d / "intermediate.pem").write_bytes(inter.public_bytes(serialization.Encoding.PEM))
    print(f"CA initialised in {d}: {n} validators, threshold {t}")
    print(f"root {root.subject.rfc4514_string()} key {root_profile.public_key.hex()}")
    print(f"intermediate {inter.subject.rfc4514_string()} key {issuing_profile.public_key.hex()}")
    return EXIT_OK


# --- consensus proof (simulated validators) ------------------------------------------------------


def committed_entry(ca: CADir, request: pbft.Request, seq: int, time_us: int) -> pbft.CommittedEntry:
    """What the validators would sign: a pre-prepare by the view-0 primary and a quorum of commits."""
    replicas = ca.consensus_signers()
    batch = (request,)
    pp = pbft.PrePrepare(0, seq, pbft.PrePrepare.compute_digest(time_us, batch), time_us, batch)
    pp_env = pbft.seal(replicas[0], 0, pp)
    commit = pbft.Commit(0, seq, pp.batch_digest)
    commits = tuple(pbft.seal(replicas[i], i, commit) for i in range(quorum_size(len(replicas))))
    return pbft.CommittedEntry(pp_env, commits)


def _execute(
    ca: CADir, app: issuance.CAApplication, payload: bytes, when: dt.datetime, expected: tuple[str, ...],
    rejected: int = EXIT_USAGE,
) -> tuple[cacommands.CAResult, pbft.Request, int]:
    """Execute one command as the operator. A rejection is a CLIError with exit code ``rejected``; a result
    that does not decode or whose status is not in ``expected`` is one with ``EXIT_IO``."""
    account = ca.operator_account()
    seq = ca.next_seq()
    request = pbft.Request.create(account, seq, payload)
    out = app.execute([Operation(account.public_key, seq, payload)], ExecutionContext(seq, _us(when)))[0]
    try:
        res = cacommands.decode_result(out)
    except DecodeError as exc:
        raise CLIError(f"result: malformed CA result ({exc})", EXIT_IO) from None
    if not res.ok:
        raise CLIError(res.detail, rejected)
    if res.status not in expected:
        raise CLIError(f"result: CA answered {res.status!r} ({res.detail}), expected {' or '.join(expected)}",
                       EXIT_IO)
    return res, request, seq


# --- commands -----------------------------------------------------------------------------------


def _load_csr(path: str) -> bytes:
    data = Path(path).read_bytes()
    try:
        csr = x509.load_pem_x509_csr(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise CLIError(f"--csr: {path} is not a PEM or DER certificate request ({exc})") from None
    return csr.public_bytes(serialization.Encoding.DER)


def cmd_issue(args: argparse.Namespace) -> int:
    ca = CADir.load(args.dir)
    names = list(args.name or [])
    if not names:
        raise CLIError("--name: at least one DNS name is required")
    lifetime = parse_lifetime(args.lifetime)
    if args.csr:
        csr_der = _load_csr(args.csr)
    else:
        key = Ed25519PrivateKey.generate()
        key_out = Path(args.key_out or (str(args.out) + ".key"))
        _write_private(
            key_out,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        csr_der = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, None)
            .public_bytes(serialization.Encoding.DER)
        )
    dns = caa.StaticDNS({}, {})
    app = ca.app(dns)
    now = _now()
    challenge, _, _ = _execute(ca, app, cacommands.challenge_command(names), now, (cacommands.STATUS_CHALLENGE,))
    proofs = challenge.proofs()
    for base, key_auth in proofs.items():  # the operator controls the names: publish dns-01 records
        dns.txt_records[f"{ownership.CHALLENGE_LABEL}.{base}"] = [ownership.dns01_txt(key_auth)]  # type: ignore[index]
    normalized = [n.lower().rstrip(".") for n in names]
    req = cacommands.IssueRequest(
        csr_der,
        tuple(normalized),
        tuple(proofs[n.removeprefix("*.")] for n in normalized),
        "trustchain-cli",
        "",
        int(lifetime.total_seconds()),
    )
    pending, _, _ = _execute(ca, app, cacommands.request_command(req), now, (cacommands.STATUS_PENDING,))
    signature = ca.signer("issuing")(app.pending[pending.pending_id].tbs)
    issued, request, seq = _execute(ca, app, cacommands.finalize_command(pending.pending_id, signature), now,
                                    (cacommands.STATUS_OK,), EXIT_IO)
    cert = x509.load_der_x509_certificate(issued.certificate_der)
    proof = committed_entry(ca, request, seq, _us(now))
    ca.save(app)
    Path(args.out).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(str(args.out) + ".proof").write_bytes(encode(proof))
    print(f"issued serial {cert.serial_number:x} for {', '.join(normalized)} -> {args.out}")
    return EXIT_OK


def _serial(text: str) -> int:
    try:
        value = int(text.removeprefix("0x"), 16)
    except ValueError:
        raise CLIError(f"SERIAL: {text!r} is not a hexadecimal serial number") from None
    if value <= 0:
        raise CLIError("SERIAL: must be positive")
    return value


def _reason(text: str) -> int:
    if text.isdigit():
        code = int(text)
        if code in carecords.REVOCATION_REASONS:
            return code
    elif text.lower() in REASONS:
        return REASONS[text.lower()]
    raise CLIError(f"--reason: {text!r} is not one of {', '.join(carecords.REVOCATION_REASONS.values())}")


def cmd_revoke(args: argparse.Namespace) -> int:
    ca = CADir.load(args.dir)
    app = ca.app()
    res, _, _ = _execute(ca, app, cacommands.revoke_command(_serial(args.serial), _reason(args.reason)), _now(),
                         (cacommands.STATUS_OK, cacommands.STATUS_UNCHANGED), 1)
    ca.save(app)
    print(f"revoked serial {res.serial.hex()}" if res.status == cacommands.STATUS_OK else
          f"serial {res.serial.hex()} was already revoked")
    return EXIT_OK


def cmd_crl(args: argparse.Namespace) -> int:
    ca = CADir.load(args.dir)
    app = ca.app()
    number = int(ca.config.get("crl_number", 0)) + 1
    ca.config["crl_number"] = number
    lst = crl.build_crl(
        ca.profile("issuing"),
        crl.revocations_from(app.revoked()),
        _now(),
        number,
        ca.signer("issuing"),
        parse_lifetime(args.lifetime),
    )
    ca.save(app)
    enc = serialization.Encoding.DER if args.der else serialization.Encoding.PEM
    Path(args.out).write_bytes(lst.public_bytes(enc))
    print(f"CRL #{number} with {len(app.revoked())} revoked certificate(s) -> {args.out}")
    return EXIT_OK


def _responder(ca: CADir) -> tuple[issuance.CAApplication, cax509.SignFunction]:
    return ca.app(), ca.signer("issuing")


def cmd_ocsp(args: argparse.Namespace) -> int:
    ca = CADir.load(args.dir)
    app, sign = _responder(ca)
    profile = ca.profile("issuing")
    if args.serve is not None:
        return _serve(args.serve, profile, app, sign)
    if not args.request or not args.out:
        raise CLIError("ocsp: give --request FILE and --out FILE, or --serve PORT")
    resp = ocsp.respond(profile, Path(args.request).read_bytes(), ocsp.status_from_app(app), _now(), sign)
    Path(args.out).write_bytes(resp)
    parsed = x509.ocsp.load_der_ocsp_response(resp)
    if parsed.response_status == x509.ocsp.OCSPResponseStatus.SUCCESSFUL:
        print(f"serial {parsed.serial_number:x}: {parsed.certificate_status.name.lower()}")
    else:
        print(f"error response: {parsed.response_status.name.lower()}")
    return EXIT_OK


def _serve(port: int, profile: cax509.IssuerProfile, app: issuance.CAApplication, sign: cax509.SignFunction) -> int:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length", "0")), 65536)
            body = ocsp.respond(profile, self.rfile.read(length), ocsp.status_from_app(app), _now(), sign)
            self.send_response(200)
            self.send_header("Content-Type", "application/ocsp-response")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    try:
        server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        raise CLIError(f"--serve: cannot listen on 127.0.0.1:{port}: {exc}", EXIT_IO) from None
    print(f"OCSP responder on http://127.0.0.1:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("ca", help="threshold certificate authority (simulated validators)", description=__doc__)
    sub = p.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")

    s = sub.add_parser("init", help="run the DKG and create root and intermediate certificates")
    s.add_argument("--validators", type=int, default=5, help="number of validators N (>= 4)")
    s.add_argument("--threshold", type=int, default=3, help="signers needed T")
    s.add_argument("--dir", required=True, help="directory for certificates, encrypted shares, operator key")
    s.add_argument("--ca-domain", default="trustchain.example", help="CA domain name checked in CAA records")
    s.add_argument("--base-url", default="http://pki.trustchain.example", help="base of CRL/OCSP/issuer URLs")
    s.add_argument("--root-name", default="TrustChain Root R1")
    s.add_argument("--issuing-name", default="TrustChain Issuing E1")
    s.add_argument("--force", action="store_true", help="overwrite an existing CA directory")
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("issue", help="issue a certificate through FROST (T shares from --dir)")
    s.add_argument("--dir", required=True)
    s.add_argument("--csr", help="PEM or DER CSR; without it an Ed25519 key is generated")
    s.add_argument("--key-out", help="where to write the generated key (default OUT.key)")
    s.add_argument("--name", action="append", help="DNS name (repeatable)")
    s.add_argument("--lifetime", default="24h", help="validity, e.g. 3600, 90m, 24h, 7d (default 24h)")
    s.add_argument("--out", required=True, help="certificate PEM; the consensus proof goes to OUT.proof")
    s.set_defaults(func=cmd_issue)

    s = sub.add_parser("revoke", help="revoke a certificate by serial number")
    s.add_argument("serial", metavar="SERIAL", help="hexadecimal serial number")
    s.add_argument("--reason", default="unspecified", help="CRLReason name or code (e.g. keyCompromise, 1)")
    s.add_argument("--dir", required=True)
    s.set_defaults(func=cmd_revoke)

    s = sub.add_parser("crl", help="write a CRL signed through FROST")
    s.add_argument("--dir", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--lifetime", default="24h", help="nextUpdate - thisUpdate (default 24h)")
    s.add_argument("--der", action="store_true", help="write DER instead of PEM")
    s.set_defaults(func=cmd_crl)

    s = sub.add_parser("ocsp", help="answer an OCSP request file, or serve OCSP on 127.0.0.1")
    s.add_argument("--dir", required=True)
    s.add_argument("--request", help="DER OCSP request file")
    s.add_argument("--out", help="DER OCSP response file")
    s.add_argument("--serve", type=int, metavar="PORT", help="serve HTTP POST OCSP on 127.0.0.1:PORT")
    s.set_defaults(func=cmd_ocsp)
