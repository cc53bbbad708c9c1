"""The OpenLineage HTTP endpoint: ``POST /api/v1/lineage``, as the OpenLineage HTTP transport sends.

Authentication: the transport's ``api_key`` arrives as ``Authorization: Bearer KEY``. A token is
required unless the server listens on loopback only; :func:`make_server` refuses to listen on any
other address without one. The token is compared in constant time and never logged.

Responses: 201 for an applied event (the status Marquez returns), 400 with ``{"error": reason}`` for
an invalid event (quarantined, counted, nothing written), 401 for a missing or wrong token, 413 for a
body over the size limit, 405 for a GET of the events path, 404 for other paths.
``GET /api/v1/lineage/stats`` returns the counts.
"""

from __future__ import annotations

import gzip
import hmac
import ipaddress
import json
import logging
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fleetscope.lineage.openlineage import InvalidEvent
from fleetscope.lineage.service import Lineage
from fleetscope.lineage.store.base import StoreError

LINEAGE_PATH = "/api/v1/lineage"
MAX_BODY_BYTES = 8 * 1024 * 1024
log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True when ``host`` (name or address) resolves only to loopback addresses."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


class LineageServer(ThreadingHTTPServer):
    """A threaded HTTP server bound to one :class:`Lineage` service."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], lineage: Lineage, api_key: str | None) -> None:
        super().__init__(address, _Handler)
        self.lineage = lineage
        self.api_key = api_key


class _Handler(BaseHTTPRequestHandler):
    server: LineageServer

    def log_message(self, format: str, *args: Any) -> None:
        # The request line never carries the token (it travels in a header), so it is safe to log.
        log.info("%s %s", self.address_string(), format % args)

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        expected = self.server.api_key
        if not expected:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())

    def do_GET(self) -> None:
        if not self._authorised():
            self._reply(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong bearer token"})
        elif self.path == f"{LINEAGE_PATH}/stats":
            stats = self.server.lineage.stats
            self._reply(HTTPStatus.OK, {"accepted": stats.accepted, "rejected": stats.rejected})
        elif self.path.split("?", 1)[0] == LINEAGE_PATH:
            self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
            self.send_header("Allow", "POST")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:
        if not self._authorised():
            self._reply(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong bearer token"})
            return
        if self.path.split("?", 1)[0] != LINEAGE_PATH:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"POST events to {LINEAGE_PATH}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY_BYTES} bytes"})
            return
        body = self.rfile.read(length)
        if "gzip" in self.headers.get("Content-Encoding", ""):
            try:
                body = gzip.decompress(body)
            except OSError as exc:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": f"bad gzip body: {exc}"})
                return
        try:
            self.server.lineage.ingest(body, source=f"http:{self.address_string()}")
        except InvalidEvent as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except StoreError as exc:
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"graph store: {exc}"})
        else:
            self._reply(HTTPStatus.CREATED, {"status": "applied"})


def make_server(lineage: Lineage, host: str, port: int, api_key: str | None) -> LineageServer:
    """Create (not start) the endpoint.

    Args:
        lineage: the service events are applied to.
        host: listen address; anything but loopback requires ``api_key``.
        port: listen port (0 picks a free one).
        api_key: bearer token clients must send, or None on loopback.

    Returns:
        The server; call ``serve_forever()``.

    Raises:
        ValueError: a non-loopback address without a token.
    """
    if not api_key and not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host} without a token: set FLEETSCOPE_LINEAGE_API_KEY "
            "(or api_key in the config), or listen on 127.0.0.1"
        )
    return LineageServer((host, port), lineage, api_key)
