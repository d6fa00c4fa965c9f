"""A real coturn for the TURN tests, configured by our own renderer, on 127.0.0.1 only.

coturn is started once per session and profile (starting one takes a fraction of a second, but
the tests share it without interfering: each allocation is independent). Readiness is a poll
on the condition itself — a STUN Binding answered over UDP, TCP (and TLS) connections accepted
— with a generous deadline for a loaded CI machine, never a fixed sleep. Teardown terminates
the process we started (by its Popen handle) and waits for it, killing it if it hangs.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signaling.turn.coturn import CoturnSettings, Profile, render

HOST = "127.0.0.1"
REALM = "switchboard.test"
#: Seconds coturn may take to answer after being started (loaded 2-core CI: be generous).
READY_TIMEOUT = 60.0
#: coturn's relay port range in the tests.
RELAY_PORTS = (20000, 29999)
#: Seconds coturn may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Coturn:
    """A running coturn and what the tests need to reach it."""

    port: int
    tls_port: int | None
    #: The secrets in coturn's configuration, in order.
    secrets: tuple[str, ...]
    directory: Path
    #: CA file trusting the server's TLS certificate (production profile only).
    cafile: Path | None = None

    @property
    def log(self) -> str:
        return (self.directory / "turnserver.log").read_text(errors="replace")

    def url(self, scheme: str = "turn", transport: str | None = None) -> str:
        port = self.tls_port if scheme in ("turns", "stuns") else self.port
        query = f"?transport={transport}" if transport else ""
        return f"{scheme}:{HOST}:{port}{query}"


def free_port(exclude: frozenset[int] = frozenset()) -> int:
    """A port free on 127.0.0.1 for both TCP and UDP right now (coturn binds both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port: int = tcp.getsockname()[1]
            if port in exclude or RELAY_PORTS[0] <= port <= RELAY_PORTS[1]:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port found")


def _stun_answers(port: int) -> bool:
    """One Binding request over UDP: does coturn answer within 0.2 s?"""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.connect((HOST, port))
        try:
            sock.send(bytes(request))
            data = sock.recv(2048)
        except OSError:  # timeout, or ECONNREFUSED while nothing listens yet
            return False
    try:
        return stun.parse_message(data).transaction_id == request.transaction_id
    except ValueError:
        return False


def _tcp_accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_ready(proc: subprocess.Popen[bytes], coturn: Coturn) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    tcp_ports = [coturn.port] + ([coturn.tls_port] if coturn.tls_port else [])
    while time.monotonic() < deadline:
        if _stun_answers(coturn.port) and all(_tcp_accepts(p) for p in tcp_ports):
            return
        try:
            # Doubles as the poll interval: returns at once if coturn died.
            code = proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"turnserver exited with {code} before answering:\n{coturn.log[-4000:]}")
    pytest.fail(f"turnserver not ready after {READY_TIMEOUT} s:\n{coturn.log[-4000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


def require_turnserver() -> str:
    """coturn is a CI dependency: fail loudly rather than skip when it is missing."""
    path = shutil.which("turnserver")
    if path is None:
        pytest.fail(
            "coturn's `turnserver` is not installed; the TURN tests need it "
            "(Debian/Ubuntu: apt-get install coturn)",
            pytrace=False,
        )
    return path


@contextmanager
def run_coturn(config_text: str, coturn: Coturn) -> Iterator[Coturn]:
    """Start ``turnserver -c`` on ``config_text``; yield once it answers; always stop it."""
    binary = require_turnserver()
    conf = coturn.directory / "turnserver.conf"
    conf.write_text(config_text)
    conf.chmod(0o600)
    with (coturn.directory / "turnserver.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(proc, coturn)
            yield coturn
        finally:
            _stop(proc)


def settings_for(profile: Profile, coturn: Coturn, **overrides: Any) -> CoturnSettings:
    """Settings that keep coturn's files in the test's directory and everything on loopback."""
    settings = CoturnSettings(
        realm=REALM,
        secrets=coturn.secrets,
        profile=profile,
        listening_ips=(HOST,),
        relay_ips=(HOST,),
        listening_port=coturn.port,
        # Below Linux's ephemeral range (32768-60999), where free_port() picks the listening
        # ports, so the two never overlap.
        min_port=RELAY_PORTS[0],
        max_port=RELAY_PORTS[1],
        log_file="stdout",
        pidfile=str(coturn.directory / "turnserver.pid"),
        userdb=str(coturn.directory / "turndb.sqlite"),
    )
    if coturn.tls_port is not None:
        settings = dataclasses.replace(settings, tls_listening_port=coturn.tls_port)
    return dataclasses.replace(settings, **overrides)


def make_self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (IP SAN), valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def new_secret() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="session")
def coturn_test(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """coturn with the ``test`` profile and two secrets (rotation), UDP and TCP, no TLS."""
    coturn = Coturn(
        port=free_port(),
        tls_port=None,
        secrets=(new_secret(), new_secret()),
        directory=tmp_path_factory.mktemp("coturn-test"),
    )
    with run_coturn(render(settings_for(Profile.TEST, coturn)), coturn) as running:
        yield running


def start_production(directory: Path, *, extra_config: str = "") -> Iterator[Coturn]:
    """coturn with the ``production`` profile (TLS with a self-signed cert) on loopback."""
    port = free_port()
    cert, key = make_self_signed(directory)
    coturn = Coturn(
        port=port,
        tls_port=free_port(exclude=frozenset({port})),
        secrets=(new_secret(),),
        directory=directory,
        cafile=cert,
    )
    text = render(settings_for(Profile.PRODUCTION, coturn, cert=str(cert), pkey=str(key)))
    with run_coturn(text + extra_config, coturn) as running:
        yield running


@pytest.fixture(scope="session")
def coturn_production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    yield from start_production(tmp_path_factory.mktemp("coturn-production"))
