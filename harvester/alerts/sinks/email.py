"""The `email` sink: SMTP through aiosmtplib, a multipart/alternative message (plain text and HTML).

`security`: `starttls` (port 587, upgrade after connecting; refuses to send if the server does not
offer it), `tls` (port 465, TLS from the first byte) or `none` (a local relay only). With `username`,
AUTH is used; the password comes from the environment. Replies mapped: a 4xx (greylisting, a full
queue), a dropped connection or a timeout are transient; a 5xx, refused recipients or failed
authentication are permanent.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Literal

import aiosmtplib
from pydantic import Field, SecretStr, model_validator

from harvester.alerts.format import build_message, html_body, plain_text
from harvester.alerts.sinks.base import Sink
from harvester.config.durations import Duration
from harvester.config.schema import SinkConfig
from harvester.errors import SinkError
from harvester.models import Alert
from harvester.plugins import SINKS

_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


class EmailSinkConfig(SinkConfig):
    type: Literal["email"] = "email"
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    subject_prefix: str = "[harvester]"
    timeout: Duration = Field(default=30.0, gt=0)
    ca_file: Path | None = None  # trust this CA (a private relay) in addition to the system's
    verify: bool = True

    @model_validator(mode="after")
    def _auth_pair(self) -> EmailSinkConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or _DEFAULT_PORTS[self.security]


def _header(text: str) -> str:
    # A newline in a header value would let a rule or post name inject headers.
    return " ".join(text.split())


def build_email(config: EmailSinkConfig, alert: Alert) -> EmailMessage:
    message = build_message(alert)
    email = EmailMessage()
    email["Subject"] = _header(f"{config.subject_prefix} {message.title}: {message.summary}".strip())[:250]
    email["From"] = config.sender
    email["To"] = ", ".join(config.to)
    email["Date"] = formatdate(localtime=False, usegmt=True)
    email["Message-ID"] = make_msgid(domain="harvester.local")
    email["X-Harvester-Idempotency-Key"] = _header(alert.key)
    email.set_content(plain_text(message))
    email.add_alternative(html_body(message), subtype="html")
    return email


class EmailSink(Sink):
    config_class = EmailSinkConfig
    config: EmailSinkConfig

    def __init__(self, config: EmailSinkConfig) -> None:
        super().__init__(config)
        self.config = config

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.config.security == "none":
            return None
        context = ssl.create_default_context(cafile=str(self.config.ca_file) if self.config.ca_file else None)
        if not self.config.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def send(self, alert: Alert) -> None:
        cfg = self.config
        what = f"email sink {self.name!r}"
        try:
            await aiosmtplib.send(
                build_email(cfg, alert),
                hostname=cfg.host,
                port=cfg.effective_port,
                username=cfg.username,
                password=cfg.password.get_secret_value() if cfg.password else None,
                use_tls=cfg.security == "tls",
                start_tls=cfg.security == "starttls",
                tls_context=self._tls_context(),
                timeout=cfg.timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise SinkError(f"{what}: authentication failed ({exc.code})", permanent=True) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise SinkError(f"{what}: recipients refused: {len(exc.recipients)}", permanent=True) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise SinkError(f"{what}: {exc}", permanent=True) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise SinkError(f"{what}: SMTP {exc.code} {exc.message}", permanent=exc.code >= 500) from None
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            raise SinkError(f"{what}: timed out after {cfg.timeout:g}s") from None
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise SinkError(f"{what}: {type(exc).__name__}: {exc}") from None


SINKS.register("email", EmailSinkConfig, EmailSink)
