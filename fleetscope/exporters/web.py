"""TLS and basic auth for ``/metrics`` from a web config file in the Prometheus exporter-toolkit format.

The same file node_exporter reads with ``--web.config.file`` (prometheus/exporter-toolkit
``docs/web-configuration.md``)::

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to this file
      key_file: server.key
      client_ca_file: ca.crt          # optional: verify client certificates
      client_auth_type: RequireAndVerifyClientCert   # NoClientCert (default) ... RequireAndVerifyClientCert
      min_version: TLS12              # TLS10 ... TLS13
      max_version: TLS13
    basic_auth_users:
      prometheus: $2b$12$...          # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

Other keys of the format (``http_server_config``, cipher suites, curve preferences) are accepted and
ignored: Python's ``ssl`` picks sane ones. Password checks use bcrypt; a successful check is cached (by
a salted digest of the credentials, never the password) because bcrypt is slow on purpose and Prometheus
scrapes every few seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import ssl
import threading
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


class TlsServerConfig(BaseModel):
    """``tls_server_config`` of the web config file."""

    model_config = ConfigDict(extra="ignore")

    cert_file: str
    key_file: str
    client_ca_file: str = ""
    client_auth_type: Literal[
        "NoClientCert",
        "RequestClientCert",
        "RequireAnyClientCert",
        "VerifyClientCertIfGiven",
        "RequireAndVerifyClientCert",
    ] = "NoClientCert"
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS13"


class WebConfig(BaseModel):
    """The web config file: TLS and basic auth users (both optional)."""

    model_config = ConfigDict(extra="ignore")

    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: dict[str, str] = {}


class WebConfigError(ValueError):
    """The web config file is unreadable or invalid; the message names the file and the field."""


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a web config file; relative certificate paths become relative to its folder.

    Raises:
        WebConfigError: Unreadable, not YAML, wrong shape, or a certificate file that does not load.
    """
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
        config = WebConfig.model_validate(loaded)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise WebConfigError(f"web config file {path}: {exc}") from None
    tls = config.tls_server_config
    if tls is not None:
        for name in ("cert_file", "key_file", "client_ca_file"):
            value = getattr(tls, name)
            if value and not os.path.isabs(value):
                setattr(tls, name, str(path.parent / value))
        try:
            server_context(config)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"web config file {path}: TLS: {exc}") from None
    for user, hashed in config.basic_auth_users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(f"web config file {path}: basic_auth_users.{user} is not a bcrypt hash")
    return config


def server_context(config: WebConfig) -> ssl.SSLContext | None:
    """The server's TLS context, or ``None`` for plain HTTP."""
    tls = config.tls_server_config
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[tls.min_version]
    context.maximum_version = _TLS_VERSIONS[tls.max_version]
    context.load_cert_chain(tls.cert_file, tls.key_file)
    context.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file:
        context.load_verify_locations(tls.client_ca_file)
    return context


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against the bcrypt hashes of the web config.

    Args:
        users: User name to bcrypt hash; empty means no authentication.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        self._key = os.urandom(32)
        self._good: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def required(self) -> bool:
        """Whether requests must authenticate."""
        return bool(self._users)

    def check(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header value names a user with the right password."""
        if not self._users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self._users.get(user)
        if hashed is None:
            return False
        digest = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if digest in self._good:
                return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            if len(self._good) > 1024:  # a bound: users times password changes, never per request
                self._good.clear()
            self._good.add(digest)
        return True
