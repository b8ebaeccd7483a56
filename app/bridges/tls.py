"""TLS for the syslog bridge (RFC 5425): the server-side SSL context from certificate and key files.

    ctx = server_context(TlsFiles(cert=Path("tls.crt"), key=Path("tls.key"), client_ca=Path("ca.crt")))

TLS 1.2 or newer (RFC 9662 updates RFC 5425 to require 1.2). With `client_ca`, every client must
present a certificate signed by a CA of that bundle (mutual TLS), else the handshake fails and no
byte of the connection is read; without it, any client may connect, as over plain TCP.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from app.config import ConfigError

__all__ = ["TlsFiles", "server_context"]


@dataclass(frozen=True)
class TlsFiles:
    """Where the bridge's certificate (chain), private key and the clients' CA bundle are."""

    cert: Path
    key: Path
    client_ca: Path | None = None


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """An SSL context serving `files`' certificate; ConfigError naming the file that is wrong."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(files.cert), keyfile=str(files.key))
    except FileNotFoundError as exc:
        raise ConfigError(f"syslog TLS: {exc.filename}: no such file (give the certificate and key as PEM files)") \
            from exc
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"syslog TLS: cannot load the certificate {files.cert} with the key {files.key}: {exc} "
                          "(PEM files; the key must belong to the certificate and not be encrypted)") from exc
    if files.client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(files.client_ca))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"syslog TLS: cannot load the client CA bundle {files.client_ca}: {exc}") from exc
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context
