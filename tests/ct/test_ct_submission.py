"""A log with accepted roots takes only X.509 certificates that chain to one of them."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import app as appmod
from trustchain.ct.entry import PrecertEntry, parse_merkle_tree_leaf
from trustchain.ct.submission import chain_error, issuer_key_hash

Key = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def _cert(subject: str, key: Key, issuer: str, issuer_key: Key, *, ca: bool, poison: bool = False,
          serial: int | None = None) -> bytes:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if poison:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    algorithm = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(issuer_key, algorithm).public_bytes(Encoding.DER)


ROOT_KEY, OTHER_KEY = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
INTER_KEY, LEAF_KEY = ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()
ROOT = _cert("Root", ROOT_KEY, "Root", ROOT_KEY, ca=True)
OTHER_ROOT = _cert("Other", OTHER_KEY, "Other", OTHER_KEY, ca=True)
INTER = _cert("Inter", INTER_KEY, "Root", ROOT_KEY, ca=True)
LEAF = _cert("leaf.example", LEAF_KEY, "Inter", INTER_KEY, ca=False)
PRECERT = _cert("leaf.example", LEAF_KEY, "Inter", INTER_KEY, ca=False, poison=True, serial=77)
TWIN = _cert("leaf.example", LEAF_KEY, "Inter", INTER_KEY, ca=False, serial=77)  # the same, without the poison
ROGUE = _cert("leaf.example", LEAF_KEY, "Inter", ec.generate_private_key(ec.SECP256R1()), ca=False)


def test_chains_to_an_accepted_root_or_says_which_field_failed() -> None:
    assert chain_error(LEAF, [INTER], [ROOT]) is None
    assert chain_error(LEAF, [INTER, ROOT], [ROOT]) is None
    assert chain_error(INTER, [], [ROOT]) is None
    assert chain_error(LEAF, [INTER], [OTHER_ROOT]) == "chain: does not lead to a root this log accepts"
    assert chain_error(ROGUE, [INTER], [ROOT]) == "certificate: not signed by the next certificate in the chain"
    assert (chain_error(b"\x30\x03\x02\x01\x00", [], [ROOT]) or "").startswith("certificate: not an X.509")
    assert (chain_error(LEAF, [b"\x30\x00"], [ROOT]) or "").startswith("chain[0]: not an X.509")
    assert chain_error(LEAF, [INTER] * 9, [ROOT]) == "chain: more than 8 certificates"


def test_the_log_refuses_junk_and_foreign_chains_and_takes_good_ones() -> None:
    app = appmod.CTApplication(Ed25519Signer(b"\x01" * 32), "v0", "log.example/1", accepted_roots=(ROOT,))

    def run(payload: bytes) -> appmod.CTResult:
        return appmod.decode_result(app.execute([Operation(b"c", 1, payload)], ExecutionContext(1, 1000))[0])

    assert run(appmod.add_chain(b"\x30\x03\x02\x01\x00")).detail.startswith("certificate: not an X.509")
    assert not run(appmod.add_chain(LEAF)).ok  # no path to the root without the intermediate
    assert run(appmod.add_chain(LEAF, (INTER,))).ok
    assert run(appmod.add_chain(PRECERT, (INTER,))).detail.startswith("certificate: is a precertificate")
    assert run(appmod.add_pre_chain(LEAF, (INTER,))).detail.startswith("precertificate: has no critical CT poison")
    assert run(appmod.add_pre_chain(PRECERT, ())).detail.startswith("chain: a precertificate needs its issuer")
    pre = run(appmod.add_pre_chain(PRECERT, (INTER,)))
    assert pre.ok
    entry = parse_merkle_tree_leaf(app.log.entries[pre.index]).entry
    poisonless = x509.load_der_x509_certificate(TWIN).tbs_certificate_bytes
    assert entry == PrecertEntry(issuer_key_hash(INTER), poisonless)
    assert app.log.extra(pre.index).precertificate == PRECERT
    assert [app.log.issuer(fp) for fp in app.log.extra(pre.index).chain] == [INTER, ROOT]  # the root is added
    assert app.size == 2
