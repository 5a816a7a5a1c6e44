"""The e-mail channel against a real SMTP server (aiosmtpd on loopback) that wants TLS and a login:
STARTTLS on a submission port and implicit TLS, the server's certificate checked against the CA the
town gives (a certificate made by the broker set-up's own CA code, for 127.0.0.1)."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from notify_helpers import free_port

from lockertools.broker import BrokerSetup
from lockertools.config import EmailSettings, Secret
from lockertools.notify.channels import EmailChannel, compose_email
from lockertools.notify.templates import Rendered

RENDERED = Rendered("nl", "Gent: uw pakket ligt klaar", "Beste inwoner,\n\n1234 5678", "sms", "1234 5678")


class _Server:
    def __init__(self) -> None:
        self.received: list[Any] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.received.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"kluis", b"geheim")
        if isinstance(data, LoginPassword):
            self.logins.append((data.login, data.password))
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    setup = BrokerSetup(tmp_path / "certs", host="127.0.0.1", tls_port=0)
    setup.write()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(setup.server_cert_path, setup.server_key_path)
    return setup.ca_path, context


@pytest.fixture
def starttls_server(certificates: tuple[Path, ssl.SSLContext]) -> Iterator[tuple[int, _Server]]:
    _, context = certificates
    server, port = _Server(), free_port()
    controller = Controller(server, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            authenticator=server.authenticate, auth_required=True)  # fmt: skip
    controller.start()
    try:
        yield port, server
    finally:
        controller.stop()


def _channel(port: int, ca: Path | None, security: str = "starttls", password: str = "geheim") -> EmailChannel:
    return EmailChannel(
        EmailSettings(
            host="127.0.0.1",
            port=port,
            security=security,
            user="kluis",
            password=Secret(password, "test"),
            sender="kluis@gent.example",
            ca_file=ca,
        )  # fmt: skip
    )


def _mail() -> Any:
    return compose_email(RENDERED, "jan@example.org", "<ref1@gent.example>", "kluis@gent.example", "Gent", None)


def test_starttls_with_a_login_delivers(
    starttls_server: tuple[int, _Server], certificates: tuple[Path, ssl.SSLContext]
) -> None:
    port, server = starttls_server
    ca, _ = certificates
    assert _channel(port, ca).send_many([(_mail(), "12345678")]) == [None]
    assert server.logins == [(b"kluis", b"geheim")]
    [message] = server.received
    assert message["Message-ID"] == "<ref1@gent.example>" and message["Subject"] == "Gent: uw pakket ligt klaar"


def test_a_wrong_password_and_an_unknown_ca_fail_without_sending(
    starttls_server: tuple[int, _Server], certificates: tuple[Path, ssl.SSLContext]
) -> None:
    port, server = starttls_server
    ca, _ = certificates
    [refused] = _channel(port, ca, password="fout").send_many([(_mail(), "12345678")])
    assert refused is not None and refused.startswith("SMTP server 127.0.0.1") and "535" in refused
    [untrusted] = _channel(port, None).send_many([(_mail(), "12345678")])  # the system's CAs only
    assert untrusted is not None and "CERTIFICATE_VERIFY_FAILED" in untrusted
    assert server.received == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_delivers(certificates: tuple[Path, ssl.SSLContext]) -> None:
    ca, context = certificates
    server, port = _Server(), free_port()
    # aiosmtpd does not count an implicit-TLS connection as TLS for AUTH: the whole connection is.
    controller = Controller(server, hostname="127.0.0.1", port=port, ssl_context=context,
                            authenticator=server.authenticate, auth_required=True, auth_require_tls=False)  # fmt: skip
    controller.start()
    try:
        assert _channel(port, ca, security="tls").send_many([(_mail(), None)]) == [None]
    finally:
        controller.stop()
    assert len(server.received) == 1 and server.logins == [(b"kluis", b"geheim")]
