"""ACME's JWS checks and account keys, against JWS made by an independent client library (josepy)."""

from __future__ import annotations

import json

import josepy as jose
import pytest
from acme import jws as acme_jws
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trustchain.accounts import RS256, AccountKey, AccountKeyError, RSAAccountSigner
from trustchain.acme import jws
from trustchain.acme.objects import ORDER_TRANSITIONS, IllegalTransition, transition
from trustchain.acme.problems import Problem

RSA_KEY = rsa.generate_private_key(65537, 2048)
NONCE = (1_000_000).to_bytes(8, "big") + bytes(16)
URL = "http://node:1/acme/new-account"


def _sign(key: jose.JWK, alg: jose.JWASignature, payload: bytes = b"{}", nonce: bytes | None = NONCE,
          kid: str | None = None) -> bytes:
    return acme_jws.JWS.sign(payload, key=key, alg=alg, nonce=nonce, url=URL, kid=kid).json_dumps().encode()


def test_an_rsa_account_jws_verifies_and_a_tampered_one_does_not() -> None:
    raw = _sign(jose.JWKRSA(key=RSA_KEY), jose.RS256)
    parsed = jws.parse(raw)
    assert not isinstance(parsed, Problem)
    assert parsed.url_path == "/acme/new-account" and parsed.nonce == NONCE
    assert parsed.jwk is not None
    key = jws.account_key(parsed.jwk, parsed.alg)
    assert isinstance(key, AccountKey) and key.algorithm == RS256
    assert jws.verify(parsed, key)
    doc = json.loads(raw)
    doc["payload"] = jose.b64encode(b'{"contact": []}').decode()
    tampered = jws.parse(json.dumps(doc).encode())
    assert not isinstance(tampered, Problem) and not jws.verify(tampered, key)
    other = jws.account_key(json.loads(jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1())).public_key()
                                       .json_dumps()), "ES256")
    assert isinstance(other, AccountKey) and not jws.verify(parsed, other)


def test_the_thumbprint_is_rfc7638s() -> None:
    key = jose.JWKRSA(key=RSA_KEY)
    account = RSAAccountSigner(RSA_KEY).key
    assert jws.thumbprint(account) == jose.b64encode(key.thumbprint()).decode()


@pytest.mark.parametrize("mutate", [
    lambda d: d | {"header": {}},  # unprotected header
    lambda d: {k: v for k, v in d.items() if k != "signature"},
    lambda d: d | {"payload": "!!"},
])
def test_malformed_jws_are_problems(mutate: object) -> None:
    doc = json.loads(_sign(jose.JWKRSA(key=RSA_KEY), jose.RS256))
    assert callable(mutate)
    assert isinstance(jws.parse(json.dumps(mutate(doc)).encode()), Problem)


def test_a_jws_without_a_nonce_or_with_a_foreign_one_is_bad_nonce() -> None:
    for nonce in (None, b"short"):
        result = jws.parse(_sign(jose.JWKRSA(key=RSA_KEY), jose.RS256, nonce=nonce))
        assert isinstance(result, Problem) and result.type.endswith("badNonce")


def test_weak_rsa_keys_are_not_account_keys() -> None:
    weak = rsa.generate_private_key(65537, 1024)
    with pytest.raises(AccountKeyError):
        RSAAccountSigner(weak)
    signer = RSAAccountSigner(RSA_KEY)
    assert signer.key.verify(b"m", signer.sign(b"m")) and not signer.key.verify(b"n", signer.sign(b"m"))


def test_order_transitions_outside_the_table_are_refused() -> None:
    assert transition(ORDER_TRANSITIONS, "ready", "finalize") == "processing"
    with pytest.raises(IllegalTransition):
        transition(ORDER_TRANSITIONS, "valid", "finalize")
