"""The exporter process: builds the enabled collectors and serves ``/metrics`` and ``/events``.

* ``GET /metrics``: Prometheus text (or OpenMetrics when the scraper asks for it), produced by
  prometheus-client's exposition from a registry holding one
  :class:`~fleetscope.exporters.scrape.ScrapeCollector`.
* ``GET /events?limit=N``: recent kernel-log events from the Xid watcher, as JSON
  ``{"source": ..., "error": ..., "events": [...]}``, oldest first.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pynvml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from fleetscope.exporters.config import ExporterConfig, split_address
from fleetscope.exporters.registry import BuildContext, registrations
from fleetscope.exporters.scrape import ScrapeCollector
from fleetscope.exporters.web import BasicAuth, WebConfig, load_web_config, server_context
from fleetscope.exporters.xid import XidWatcher

log = logging.getLogger(__name__)

_INDEX = b"""<html><head><title>fleetscope exporter</title></head><body>
<h1>fleetscope exporter</h1><p><a href="/metrics">/metrics</a> (Prometheus) &middot;
<a href="/events">/events</a> (recent kernel-log events, JSON)</p></body></html>
"""


class Exporter:
    """The per-node agent: collectors, registry and HTTP server.

    Args:
        config: The validated configuration.
        nvml: The NVML module handed to the GPU collector (tests pass a fake).
    """

    def __init__(self, config: ExporterConfig, nvml: Any = pynvml) -> None:
        self.config = config
        self.collectors: dict[str, Any] = {}
        for registration in registrations():
            if not config.enabled(registration.name):
                continue
            built = {name: self.collectors.get(name) for name in registration.needs}
            context = BuildContext(registration.name, config, nvml, built)
            self.collectors[registration.name] = registration.build(context)
        self.scrape = ScrapeCollector(list(self.collectors.values()), timeout=config.scrape_timeout_seconds)
        self.registry = CollectorRegistry()
        self.registry.register(self.scrape)
        web = load_web_config(config.web_config_file) if config.web_config_file else WebConfig()
        self.auth = BasicAuth(web.basic_auth_users)
        host, port = split_address(config.listen_address)
        self._server = _Server((host, port), _handler(self))
        tls = server_context(web)
        self.tls = tls is not None
        if tls is not None:
            # The handshake runs on the first read, in the request's own thread: a client that stalls
            # it cannot hold up the accept loop.
            self._server.socket = tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread: threading.Thread | None = None

    @property
    def watcher(self) -> XidWatcher | None:
        """The Xid watcher, if the xid collector runs."""
        xid = self.collectors.get("xid")
        return xid.watcher if xid is not None else None

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with port 0)."""
        return int(self._server.server_address[1])

    def serve_forever(self) -> None:
        """Start the Xid watcher and serve HTTP until :meth:`stop` is called from another thread."""
        for collector in self.collectors.values():
            start = getattr(collector, "start", None)
            if start is not None:
                start()
        log.info(
            "fleetscope exporter listening on %s (%s%s)",
            self.config.listen_address,
            "https" if self.tls else "http",
            ", basic auth" if self.auth.required else "",
        )
        self._server.serve_forever()

    def start(self) -> Exporter:
        """Serve in a background thread (tests, embedding); returns ``self``."""
        self._thread = threading.Thread(target=self.serve_forever, name="exporter-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the watcher, NVML and the socket."""
        self._server.shutdown()
        self._server.server_close()
        self.scrape.close()
        for collector in self.collectors.values():
            close = getattr(collector, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # stopping: one collector's failure must not keep the others open
                    log.exception("closing collector %s failed", collector.name)
        if self._thread is not None:
            self._thread.join(5)

    def events_json(self, limit: int | None = None) -> bytes:
        """Render ``/events``: the watcher's recent events, oldest first, at most ``limit`` of them."""
        if self.watcher is None:
            body: dict[str, Any] = {"source": None, "error": "the Xid collector is disabled", "events": []}
        else:
            events = self.watcher.events()
            body = {
                "source": self.watcher.kernel_log,
                "error": self.watcher.error,
                "events": events[-limit:] if limit else events,
            }
        return json.dumps(body).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that speaks plain HTTP to the TLS port, fails the handshake or hangs up mid-answer is
        # the client's problem: one debug line, not a traceback on stderr per attempt.
        log.debug("request from %s failed", client_address, exc_info=True)


def _handler(exporter: Exporter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # seconds a client may take to send its request (slow or stuck scrapers)

        def do_GET(self) -> None:
            if not exporter.auth.check(self.headers.get("Authorization")):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="fleetscope exporter"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            url = urlsplit(self.path)
            if url.path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, content_type, encoder(exporter.registry))
            elif url.path == "/events":
                limit = parse_qs(url.query).get("limit", [""])[0]
                if limit and not limit.isdigit():
                    self._send(400, "text/plain", b"limit must be a non-negative integer\n")
                    return
                self._send(200, "application/json", exporter.events_json(int(limit) if limit else None))
            elif url.path == "/":
                self._send(200, "text/html", _INDEX)
            else:
                self._send(404, "text/plain", b"not found; try /metrics or /events\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Prometheus scrapes every few seconds; access lines would drown the useful log.
            log.debug("%s " + format, self.address_string(), *args)

    return Handler
