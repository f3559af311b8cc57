"""Local stand-ins for the services alert sinks talk to: an HTTP receiver (aiohttp.web) and an SMTP
server (aiosmtpd), both on 127.0.0.1, recording what arrives, with faults injected on demand."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers.get("Idempotency-Key", "")


@dataclass
class Fault:
    """One scripted response: a status with headers and body, or `stall` (never answer)."""

    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    stall: bool = False


def unused_port() -> int:
    """A port nothing listens on (bound, then released): connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeHttpServer:
    """Records every request; answers from `faults` first (one per request), then with `ok`."""

    def __init__(self, ok: Callable[[Recorded], web.Response] | None = None) -> None:
        self.requests: list[Recorded] = []
        self.statuses: list[int] = []  # the status each request was answered with, in order
        self.faults: list[Fault] = []
        self.fail_with: Fault | None = None  # answer every request so while set
        self.ok = ok or (lambda _request: web.json_response({"ok": True}))
        self._arrived = asyncio.Condition()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeHttpServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = Recorded(
            request.method, request.path, dict(request.query), dict(request.headers), await request.read()
        )
        async with self._arrived:
            self.requests.append(recorded)
            self._arrived.notify_all()
        fault = self.faults.pop(0) if self.faults else self.fail_with
        if fault is not None:
            if fault.stall:
                await self._release.wait()
            self.statuses.append(fault.status)
            return web.Response(status=fault.status, headers=fault.headers, text=fault.body)
        response = self.ok(recorded)
        self.statuses.append(response.status)
        return response

    async def wait_for(self, count: int, within: float = 10.0) -> list[Recorded]:
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return self.requests


# ------------------------------------------------------------------------------------------- SMTP


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    content: bytes
    authenticated_as: str | None


class RecordingHandler:
    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.data_replies: list[str] = []  # e.g. "451 4.3.0 try again later", used once each
        self.rcpt_reply: str | None = None
        self.arrived = asyncio.Event()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.mails.append(
            Mail(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                bytes(envelope.original_content or b""),
                login,
            )
        )
        self.arrived.set()
        return "250 Message accepted"


class Authenticator:
    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.user,
            self.password,
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class FakeSmtpServer:
    """aiosmtpd in the test's own event loop. `mode`: plain, starttls (required) or tls (implicit)."""

    def __init__(
        self,
        mode: str = "plain",
        cert: tuple[Path, Path] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.mode = mode
        self.cert = cert
        self.credentials = credentials
        self.handler = RecordingHandler()
        self._server: asyncio.Server | None = None
        self.port = 0

    def _context(self) -> ssl.SSLContext:
        assert self.cert is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
        return context

    def _protocol(self) -> SMTP:
        auth = Authenticator(*self.credentials) if self.credentials else None
        return SMTP(
            self.handler,
            hostname="fake-smtp",
            tls_context=self._context() if self.mode == "starttls" else None,
            require_starttls=self.mode == "starttls",
            authenticator=auth,
            # aiosmtpd warns about AUTH required without its own TLS check; implicit TLS is TLS anyway.
            auth_required=auth is not None and self.mode == "starttls",
            # Implicit TLS wraps the socket before aiosmtpd sees it, so it cannot tell; only STARTTLS
            # mode needs aiosmtpd's own check.
            auth_require_tls=self.mode == "starttls",
        )

    async def start(self) -> FakeSmtpServer:
        loop = asyncio.get_running_loop()
        ssl_context = self._context() if self.mode == "tls" else None
        self._server = await loop.create_server(self._protocol, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (the openssl command line, no extra package)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
