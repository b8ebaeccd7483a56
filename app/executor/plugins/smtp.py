"""`email`: send a plain-text mail through the SMTP server of executor.yaml (`smtp:` section).

Params: to (address or list), cc (optional, same), subject, body. The sender, server and
credentials come only from executor.yaml (the password from env/file), never from params.
STARTTLS is used when `smtp.starttls: true`, and then required: a server that does not offer it
fails the action rather than getting the credentials in clear text. The relay is a destination
like any other: executor.yaml's `outbound` allowlist must allow it (scheme `smtp`), and the
connection goes to the address the guard vetted, while STARTTLS checks the relay's name.

Not idempotent: a re-sent mail is a second mail. The Message-ID is derived from the action id,
so mail systems and people can still recognise a copy if one ever went out twice.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

from app.executor.allowlist import IPAddress
from app.executor.config import SmtpConfig
from app.executor.plugin import ActionCall, ActionFailed, ActionRejected, ActionTimedOut, action
from app.executor.plugins.params import check_keys, get_param

__all__ = ["build_message", "email_action"]

_PARAMS = ("to", "cc", "subject", "body")


def _addresses(call: ActionCall, name: str, *, required: bool) -> list[str]:
    value: str | list[Any]
    if required:
        value = get_param(call.params, name, (str, list), plugin="email")
    else:
        value = get_param(call.params, name, (str, list), default=[], plugin="email")
    items: list[Any] = [value] if isinstance(value, str) else value
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or "\n" in item or "\r" in item:
            raise ActionRejected(f"email: {name}: {item!r} is not an email address")
        _, addr = parseaddr(item)
        if "@" not in addr:
            raise ActionRejected(f"email: {name}: {item!r} is not an email address")
        out.append(item)
    if required and not out:
        raise ActionRejected(f"email: param {name} has no address")
    return out


def build_message(call: ActionCall, smtp: SmtpConfig) -> EmailMessage:
    """The mail an action asks for (ActionRejected on bad params)."""
    check_keys(call.params, _PARAMS, plugin="email")
    to = _addresses(call, "to", required=True)
    cc = _addresses(call, "cc", required=False)
    subject = get_param(call.params, "subject", str, plugin="email")
    if "\n" in subject or "\r" in subject:
        raise ActionRejected("email: subject must be one line")
    a = call.action
    msg = EmailMessage()
    msg["From"] = smtp.from_addr
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{a.id}@vigil>"
    msg["X-Vigil-Action-Id"] = a.id
    msg["X-Vigil-Rule"] = a.rule
    if a.trace_id:
        msg["X-Vigil-Trace-Id"] = a.trace_id
    msg.set_content(get_param(call.params, "body", str, default="", plugin="email"))
    return msg


class _PinnedSMTP(smtplib.SMTP):
    """smtplib.SMTP that connects to a vetted address while keeping the relay's name for EHLO's
    peer and STARTTLS's certificate check (smtplib takes both from the host given to connect)."""

    def __init__(self, host: str, port: int, *, address: IPAddress, timeout: float) -> None:
        self._address = address
        super().__init__(host, port, timeout=timeout)  # connects, through _get_socket

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((str(self._address), port), timeout, self.source_address)


def _send(smtp: SmtpConfig, msg: EmailMessage, timeout_s: float, address: IPAddress) -> str:
    """Deliver `msg` through the relay at `address` (blocking; runs in a worker thread)."""
    where = f"{smtp.host}:{smtp.port}"
    try:
        with _PinnedSMTP(smtp.host, smtp.port, address=address, timeout=timeout_s) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.username:
                client.login(smtp.username, smtp.password.get_secret_value() if smtp.password else "")
            refused = client.send_message(msg)
    except TimeoutError as exc:
        raise ActionTimedOut(f"SMTP {where}: timed out after {timeout_s:g}s ({exc})") from None
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError,
            smtplib.SMTPSenderRefused) as exc:
        raise ActionFailed(f"SMTP {where}: {type(exc).__name__}: {exc}", retryable=False) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise ActionFailed(f"SMTP {where}: {type(exc).__name__}: {exc}") from None
    sent = f"sent to {msg['To']}" + (f", cc {msg['Cc']}" if msg["Cc"] else "") + f" via {where}"
    return sent + (f"; refused: {', '.join(sorted(refused))}" if refused else "")


@action("email")
async def email_action(call: ActionCall) -> str:
    """Send a plain-text email through the configured SMTP server."""
    smtp = call.config.smtp
    if smtp is None:
        raise ActionRejected("email: this executor has no smtp section in its config")
    msg = build_message(call, smtp)
    try:
        vetted = await call.egress.vet("smtp", smtp.host, smtp.port)
    except ActionRejected as exc:
        raise ActionRejected(f"email: the smtp relay: {exc}") from None
    return await asyncio.to_thread(_send, smtp, msg, min(smtp.timeout_ms / 1000, call.timeout_s), vetted.addresses[0])
