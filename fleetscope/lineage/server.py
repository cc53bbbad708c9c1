"""The OpenLineage HTTP endpoint: ``POST /api/v1/lineage``, as the OpenLineage HTTP transport sends,
served by uvicorn (h11) with a Starlette application.

Authentication: the transport's ``api_key`` arrives as ``Authorization: Bearer KEY``. A token is
required unless the server listens on loopback only; :class:`LineageServer` refuses to listen on
any other address without one. The token is compared in constant time and never logged.

Responses: 201 for an applied event (the status Marquez returns) or one applied before (not logged
again), 400 with ``{"error": reason}`` for an invalid event (quarantined, counted, nothing written)
or a malformed request (h11 answers a ``Content-Length`` that is not a non-negative number with 400
before the application sees it), 401 for a missing or wrong token, 408 for a body not received within
:data:`BODY_TIMEOUT_S`, 413 for a body, sent or decompressed, over :data:`MAX_BODY_BYTES`, 415 for
an encoding other than identity or gzip, 503 when the graph store is unreachable, 405 for a GET of
the events path, 404 for other paths. ``GET /api/v1/lineage/stats`` returns the counts.

Slow clients: a connection that has not sent a whole request head within :data:`HEADER_TIMEOUT_S`
is closed (uvicorn itself has no such timeout); waiting connections cost no thread; the listen
backlog is :data:`BACKLOG`. Events are applied in a worker thread, one at a time (the service's lock).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import socket
import zlib
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from fleetscope.lineage.openlineage import InvalidEvent
from fleetscope.lineage.service import Lineage
from fleetscope.lineage.store.base import StoreError

LINEAGE_PATH = "/api/v1/lineage"
#: Largest body accepted, as sent and after gzip decompression.
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Seconds a client has to send a whole request head (line and headers).
HEADER_TIMEOUT_S = 10.0
#: Seconds a client has to send the whole body once the head is in.
BODY_TIMEOUT_S = 30.0
#: Pending connections the kernel queues before accepting (a burst of posts is not reset).
BACKLOG = 4096
log = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """The endpoint cannot start; the message names the address."""


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def is_loopback(host: str) -> bool:
    """True when ``host`` (name or address) resolves only to loopback addresses."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


class _HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not complete within
    :data:`HEADER_TIMEOUT_S` (after it opens, and after each response)."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm_header_timeout()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timeout()

    def _arm_header_timeout(self) -> None:
        self.loop.call_later(HEADER_TIMEOUT_S, self._header_timeout)

    def _header_timeout(self) -> None:
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


async def _read_body(request: Request) -> bytes:
    """The body, decompressed, within the size limit and the body timeout."""
    length = request.headers.get("content-length")
    if length is not None and int(length) > MAX_BODY_BYTES:  # h11 has checked that it is a number
        raise _Refused(413, f"body over {MAX_BODY_BYTES} bytes")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in {"identity", "gzip", ""}:
        raise _Refused(415, f"unsupported Content-Encoding {encoding!r} (identity or gzip)")
    inflate = zlib.decompressobj(wbits=31) if encoding == "gzip" else None
    body, received = bytearray(), 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.stream():
                received += len(chunk)
                if received > MAX_BODY_BYTES:
                    raise _Refused(413, f"body over {MAX_BODY_BYTES} bytes")
                if inflate is None:
                    body += chunk
                    continue
                body += inflate.decompress(chunk, MAX_BODY_BYTES + 1 - len(body))
                if inflate.unconsumed_tail or len(body) > MAX_BODY_BYTES:
                    raise _Refused(413, f"body over {MAX_BODY_BYTES} bytes once decompressed")
    except TimeoutError:
        raise _Refused(408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s") from None
    except zlib.error as exc:
        raise _Refused(400, f"bad gzip body: {exc}") from None
    if inflate is not None and not inflate.eof:
        raise _Refused(400, "bad gzip body: it ends before the gzip stream does")
    return bytes(body)


def create_app(lineage: Lineage, api_key: str | None) -> Starlette:
    """The Starlette application of the endpoint (see the module docstring)."""

    def authorised(request: Request) -> bool:
        if not api_key:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())

    unauthorised = {"error": "missing or wrong bearer token"}

    async def post_event(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse(unauthorised, 401)
        try:
            body = await _read_body(request)
        except _Refused as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        client = request.client.host if request.client else "unknown"
        try:
            await run_in_threadpool(lineage.ingest, body, source=f"http:{client}")
        except InvalidEvent as exc:
            return JSONResponse({"error": str(exc)}, 400)
        except StoreError as exc:
            return JSONResponse({"error": f"graph store: {exc}"}, 503)
        return JSONResponse({"status": "applied"}, 201)

    async def stats(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse(unauthorised, 401)
        return JSONResponse({"accepted": lineage.stats.accepted, "rejected": lineage.stats.rejected})

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"no such path {request.url.path}: POST events to {LINEAGE_PATH}"}, 404)

    return Starlette(
        routes=[
            Route(LINEAGE_PATH, post_event, methods=["POST"]),
            Route(f"{LINEAGE_PATH}/stats", stats, methods=["GET"]),
        ],
        exception_handlers={404: not_found},
    )


class LineageServer:
    """The endpoint, bound to its address (not yet serving).

    Args:
        lineage: the service events are applied to.
        host: listen address; anything but loopback requires ``api_key``.
        port: listen port (0 picks a free one; :attr:`port` says which).
        api_key: bearer token clients must send, or None on loopback.

    Raises:
        ValueError: a non-loopback address without a token.
        ServerError: the address cannot be listened on (in use, not local ...).
    """

    def __init__(self, lineage: Lineage, host: str, port: int, api_key: str | None) -> None:
        if not api_key and not is_loopback(host):
            raise ValueError(
                f"refusing to listen on {host} without a token: set FLEETSCOPE_LINEAGE_API_KEY "
                "(or api_key in the config), or listen on 127.0.0.1"
            )
        self.host = host
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            self.socket = socket.socket(family, kind, proto)
        except OSError as exc:
            raise ServerError(f"cannot listen on {host}:{port}: {exc}") from exc
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(BACKLOG)
        except OSError as exc:
            self.socket.close()
            raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(
            create_app(lineage, api_key),
            http=_HeaderTimeoutProtocol,
            backlog=BACKLOG,
            timeout_keep_alive=5,
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        self._server = uvicorn.Server(config)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{LINEAGE_PATH}"

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGINT / SIGTERM in the main thread); closes the socket."""
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def stop(self) -> None:
        """Ask :meth:`run` to finish the requests in flight and return."""
        self._server.should_exit = True


def serve(
    lineage: Lineage, host: str, port: int, api_key: str | None, announce: Callable[[str], Any] = print
) -> None:
    """Serve the endpoint until interrupted.

    Raises:
        ValueError: off loopback without a token.
        ServerError: the address cannot be listened on.
    """
    server = LineageServer(lineage, host, port, api_key)
    auth = "bearer token required" if api_key else "no token (loopback only)"
    announce(f"OpenLineage endpoint on {server.url}, {auth}")
    server.run()
