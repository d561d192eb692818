"""`trustchain-cli dns` through reference_node.cli.main, and one end-to-end run of `serve` as a
subprocess queried with dig."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reference_node.cli import main

ZONE = """$ORIGIN cli.example.
$TTL 300
@    IN SOA ns1 hostmaster 7 3600 600 1209600 300
@    IN NS  ns1
ns1  IN A   192.0.2.53
www  IN A   192.0.2.80
www  IN AAAA 2001:db8::80
"""


@pytest.fixture
def zonefile(tmp_path: Path) -> Path:
    path = tmp_path / "cli.zone"
    path.write_text(ZONE)
    return path


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ([], ["sign"], ["serve"], ["resolve"]):
        argv = ["dns", *sub, "--help"]
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    assert "--trust-anchor" in capsys.readouterr().out


def test_sign_writes_signed_zone_ds_and_generated_keys(zonefile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dns", "sign", str(zonefile), "--now", "1700000000"]) == 0
    signed = (zonefile.parent / "cli.zone.signed").read_text()
    assert "RRSIG A 15 3 300" in signed and "NSEC" in signed and "DNSKEY 257 3 15" in signed
    ds = (zonefile.parent / "dsset-cli.example.").read_text()
    assert re.match(r"cli\.example\. \d+ IN DS \d+ 15 2 [0-9a-f]{64}", ds)
    seeds = sorted(p.name for p in (zonefile.parent / "keys").iterdir())
    assert seeds == ["cli.example.ksk.seed", "cli.example.zsk.seed"]
    # same seeds, same time: byte-identical output (deterministic Ed25519)
    assert main(["dns", "sign", str(zonefile), "--now", "1700000000", "--nsec3"]) == 0
    assert "NSEC3PARAM" in (zonefile.parent / "cli.zone.signed").read_text()
    assert (zonefile.parent / "dsset-cli.example.").read_text() == ds
    assert "IN DS" in capsys.readouterr().out


def test_sign_errors_name_the_problem(tmp_path: Path, zonefile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dns", "sign", str(tmp_path / "missing.zone")]) == 3
    assert "missing.zone" in capsys.readouterr().err
    bad = tmp_path / "bad.zone"
    bad.write_text(ZONE + "x IN A 999.1.1.1\n")
    assert main(["dns", "sign", str(bad)]) == 2
    assert "bad.zone: not a valid zone file" in capsys.readouterr().err
    seed = tmp_path / "short.seed"
    seed.write_text("abcd\n")
    assert main(["dns", "sign", str(zonefile), "--ksk-seed", str(seed), "--zsk-seed", str(seed)]) == 2
    assert "short.seed: key seed must be 64 hex digits" in capsys.readouterr().err
    assert main(["dns", "serve", "--zone", str(zonefile), "--listen", "nonsense:port"]) == 2
    assert "--listen" in capsys.readouterr().err
    assert main(["dns", "serve", "--zone", str(zonefile), "--doq", "127.0.0.1:0"]) == 2
    assert "--doq needs --tls-cert" in capsys.readouterr().err
    assert main(["dns", "resolve", "www.cli.example.", "--validate", "--server", "127.0.0.1:1"]) == 2


@pytest.mark.parametrize(("content", "error"), [
    (b"", "empty.zone: not a zone file: it is empty"),
    (b"\xff\xfe" + ZONE.encode(), "empty.zone: not a zone file: not UTF-8 text (byte 0)"),
    ((ZONE + "@ IN SOA ns1 hostmaster 8 3600 600 1209600 300\n").encode(),
     "empty.zone: line 8: a second SOA record (the first is on line 3): a zone has exactly one"),
    ((ZONE + "www.elsewhere.example. IN A 192.0.2.9\n").encode(),
     "empty.zone: line 8: www.elsewhere.example. is outside the zone cli.example."),
    ((ZONE + "@ IN NS ns2\n").encode(), "empty.zone: line 8: NS ns2.cli.example. is inside the zone but has no A or"),
    (ZONE.replace("$ORIGIN cli.example.\n", "").encode(),
     "empty.zone: no $ORIGIN in the file, and no origin given (--origin)"),
])
def test_zone_files_named_checkzone_refuses_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         content: bytes, error: str) -> None:
    """One line naming the file (and the line), exit 2, no traceback, nothing written."""
    path = tmp_path / "empty.zone"
    path.write_bytes(content)
    assert main(["dns", "sign", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trustchain-cli: error: ") and error in err and err.count("\n") == 1, err
    assert not (tmp_path / "empty.zone.signed").exists()
    if shutil.which("named-checkzone") and content.startswith(b"$ORIGIN") and b"elsewhere" not in content:
        out = subprocess.run(["named-checkzone", "cli.example", str(path)], capture_output=True, text=True,
                             check=False)
        assert out.returncode != 0, out.stdout  # the reference checker refuses the same file


@pytest.mark.parametrize("now", ["100", "-5", str(2**32), "99999999999"])
def test_sign_times_a_signature_cannot_carry_are_refused(zonefile: Path, capsys: pytest.CaptureFixture[str],
                                                         now: str) -> None:
    assert main(["dns", "sign", str(zonefile), "--now", now]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"trustchain-cli: error: --now: {now} is outside") and err.count("\n") == 1, err


def test_serve_refuses_a_doq_certificate_or_key_that_is_not_one(tmp_path: Path, zonefile: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tls_testutil import self_signed  # a real certificate and key, for the half that is right

    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    cert, key = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    other_cert, _ = self_signed(tmp_path / "other")
    for tls, error in (((junk, key), f"--tls-cert: {junk}: not a PEM certificate"),
                       ((cert, junk), f"--tls-key: {junk}: not an unencrypted PEM private key"),
                       ((other_cert, key), f"--tls-key: {key}: does not match the certificate in --tls-cert")):
        argv = ["dns", "serve", "--zone", str(zonefile), "--listen", "127.0.0.1:0", "--doq", "127.0.0.1:0",
                "--tls-cert", str(tls[0]), "--tls-key", str(tls[1]), "--duration", "0.1"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"trustchain-cli: error: {error}\n", err


def test_serve_and_resolve_in_process(zonefile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`serve` for a few seconds in a thread; `resolve` validates against the DS written by `sign`."""
    assert main(["dns", "sign", str(zonefile)]) == 0
    capsys.readouterr()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    thread = threading.Thread(target=main, args=(["dns", "serve", "--zone", str(zonefile), "--listen",
                                                   f"127.0.0.1:{port}", "--duration", "4"],), daemon=True)
    thread.start()
    time.sleep(1.0)
    anchor = str(zonefile.parent / "dsset-cli.example.")
    common = ["--server", f"127.0.0.1:{port}", "--validate", "--trust-anchor", anchor]
    assert main(["dns", "resolve", "www.cli.example.", "AAAA", *common]) == 0
    out = capsys.readouterr().out
    assert "2001:db8::80" in out and ";; validation: secure" in out
    assert main(["dns", "resolve", "nope.cli.example.", "A", *common, "--authoritative"]) == 1
    out = capsys.readouterr().out
    assert "NXDOMAIN" in out and ";; validation: secure" in out
    wrong = zonefile.parent / "wrong-anchor"
    wrong.write_text("cli.example. 3600 IN DS 1234 15 2 " + "ab" * 32 + "\n")
    assert main(["dns", "resolve", "www.cli.example.", "--server", f"127.0.0.1:{port}", "--validate",
                 "--trust-anchor", str(wrong)]) == 1
    assert "BOGUS" in capsys.readouterr().out
    thread.join(10)
    assert main(["dns", "resolve", "www.cli.example.", "--server", f"127.0.0.1:{port}", "--timeout", "0.3"]) == 3


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig not installed (apt: bind9-dnsutils)")
def test_serve_subprocess_end_to_end_with_dig(zonefile: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "reference_node.cli", "dns", "serve", "--zone", str(zonefile),
                             "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"udp 127\.0\.0\.1:(\d+)", line)
        assert match, line + (proc.stderr.read() if proc.stderr else "")
        port = match.group(1)
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"  # the dns-fast extra, when installed
        assert f"tcp 127.0.0.1:{port}" in line and line.rstrip().endswith(f"({loop})"), line
        out = subprocess.run(["dig", "@127.0.0.1", "-p", port, "+dnssec", "www.cli.example.", "A"],
                             capture_output=True, text=True, timeout=20, check=False).stdout
        assert "status: NOERROR" in out and "192.0.2.80" in out and "RRSIG\tA 15" in out
        out = subprocess.run(["dig", "@127.0.0.1", "-p", port, "+tcp", "cli.example.", "SOA"],
                             capture_output=True, text=True, timeout=20, check=False).stdout
        assert "status: NOERROR" in out and " 7 3600 600" in out
    finally:
        proc.terminate()
        stdout, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "stopped: 1 udp, 1 tcp" in stdout
