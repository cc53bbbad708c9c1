"""Serving a simulated cluster: one exporter endpoint per node, or one Prometheus-style query API.

:class:`ExporterEndpoints` listens on one port per node, all from this process, each answering
``/metrics`` and ``/events`` as ``fleetscope exporter`` does (prometheus-client's exposition, so
Prometheus's content negotiation works too). A node with a ``dead_node`` fault stops listening while it
lasts (connections are refused, as from a powered-off host's closed port) and listens again after.
:func:`write_file_sd` writes the Prometheus ``file_sd`` JSON that ``fleetscope collect --targets-file``
and Prometheus read: one group per node, its name in the ``node`` label.

:class:`QueryAPI` serves :mod:`fleetscope.simulate.promql` on one port, for clusters too large for a
port per node.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from fleetscope.simulate import promql
from fleetscope.simulate.cluster import SimulatedCluster

log = logging.getLogger(__name__)

_BANNER = "fleetscope simulate: a SIMULATED cluster, not real hardware"
_VECTOR = '{"status":"success","data":{"resultType":"vector","result":['


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("request from %s failed", client_address, exc_info=True)


class _NodeFamilies(Collector):
    """The families of one simulated node, computed at each scrape."""

    def __init__(self, cluster: SimulatedCluster, node: int) -> None:
        self.cluster, self.node = cluster, node

    def collect(self) -> Iterable[Metric]:
        return self.cluster.families(self.node, self.cluster.now())


def _reply(handler: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _exporter_handler(cluster: SimulatedCluster, node: int) -> type[BaseHTTPRequestHandler]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeFamilies(cluster, node))

    class Handler(BaseHTTPRequestHandler):
        timeout = 30

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                _reply(self, 200, content_type, encoder(registry))
            elif url.path == "/events":
                limit = parse_qs(url.query).get("limit", [""])[0]
                if limit and not limit.isdigit():
                    _reply(self, 400, "text/plain", b"limit must be a non-negative integer\n")
                    return
                body = cluster.events(node, cluster.now())
                if limit:
                    body["events"] = body["events"][-int(limit) :] if int(limit) else []
                _reply(self, 200, "application/json", json.dumps(body).encode())
            elif url.path == "/":
                page = f"<html><body><h1>{_BANNER}</h1><p>node {cluster.names[node]}: "
                page += '<a href="/metrics">/metrics</a> <a href="/events">/events</a></p></body></html>'
                _reply(self, 200, "text/html", page.encode())
            else:
                _reply(self, 404, "text/plain", b"not found; try /metrics or /events\n")

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


class ExporterEndpoints:
    """Every node of a simulated cluster as an exporter endpoint on its own port.

    Args:
        cluster: the simulated cluster.
        host: the address to listen on (loopback by default).
        ports: one port per node, or None for free ports the system picks.
        poll: seconds between checks for a ``dead_node`` fault starting or ending.

    Raises:
        OSError: a port cannot be bound.
        ValueError: ``ports`` does not give one port per node.
    """

    def __init__(
        self,
        cluster: SimulatedCluster,
        host: str = "127.0.0.1",
        ports: Sequence[int] | None = None,
        poll: float = 0.1,
    ) -> None:
        if ports is not None and len(ports) != cluster.nodes:
            raise ValueError(f"{len(ports)} ports given for {cluster.nodes} nodes")
        self.cluster = cluster
        self.host = host
        self._poll = poll
        self._servers: list[_Server | None] = [None] * cluster.nodes
        self.ports: list[int] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        try:
            for node in range(cluster.nodes):
                self.ports.append(self._listen(node, ports[node] if ports is not None else 0))
        except OSError:
            self.stop()
            raise

    def _listen(self, node: int, port: int) -> int:
        server = _Server((self.host, port), _exporter_handler(self.cluster, node))
        self._servers[node] = server
        thread = threading.Thread(target=server.serve_forever, name=f"sim-{node}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return int(server.server_address[1])

    def targets(self) -> dict[str, str]:
        """``{node name: host:port}`` of every node."""
        return {
            name: f"{self.host}:{port}" for name, port in zip(self.cluster.names, self.ports, strict=True)
        }

    def start(self) -> ExporterEndpoints:
        """Start following ``dead_node`` faults in a daemon thread; returns ``self``."""
        self._monitor = threading.Thread(target=self._follow_faults, name="sim-faults", daemon=True)
        self._monitor.start()
        return self

    def _follow_faults(self) -> None:
        while not self._stop.wait(self._poll):
            t = self.cluster.now()
            for node in range(self.cluster.nodes):
                alive, server = self.cluster.alive(node, t), self._servers[node]
                if not alive and server is not None:
                    log.info("simulated node %s stops answering", self.cluster.names[node])
                    server.shutdown()
                    server.server_close()
                    self._servers[node] = None
                elif alive and server is None:
                    try:
                        self._listen(node, self.ports[node])
                        log.info("simulated node %s answers again", self.cluster.names[node])
                    except OSError as exc:  # the port was taken meanwhile: say so, try again next poll
                        log.warning(
                            "simulated node %s cannot listen again: %s", self.cluster.names[node], exc
                        )

    def stop(self) -> None:
        """Stop every endpoint and the fault follower."""
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(5)
        for node, server in enumerate(self._servers):
            if server is not None:
                server.shutdown()
                server.server_close()
                self._servers[node] = None
        for thread in self._threads:
            thread.join(5)


def write_file_sd(path: Path, targets: dict[str, str]) -> None:
    """Write a Prometheus ``file_sd`` JSON file: one group per node, named by its ``node`` label.

    Written to a temporary file and renamed, so a reader never sees half of it.

    Raises:
        OSError: the file cannot be written.
    """
    groups = [{"targets": [address], "labels": {"node": name}} for name, address in targets.items()]
    path = Path(path)
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(json.dumps(groups, indent=1) + "\n")
    staging.replace(path)


def _query_handler(cluster: SimulatedCluster, index: promql.SeriesIndex) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 30

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            self._answer(url.path, parse_qs(url.query))

        def do_POST(self) -> None:
            length = self.headers.get("Content-Length", "0")
            body = self.rfile.read(int(length)) if length.isdigit() else b""
            self._answer(urlsplit(self.path).path, parse_qs(body.decode("utf-8", "replace")))

        def _answer(self, path: str, params: dict[str, list[str]]) -> None:
            if path == "/api/v1/status/buildinfo":
                info = {"version": "simulation", "revision": _BANNER}
                self._json(200, {"status": "success", "data": info})
            elif path == "/api/v1/query":
                try:
                    at = promql.parse_time(params.get("time", [""])[0], cluster.clock())
                    result = index.query(params.get("query", [""])[0], at)
                except promql.BadQuery as exc:
                    self._json(400, {"status": "error", "errorType": "bad_data", "error": str(exc)})
                    return
                # The series come rendered (promql.SeriesIndex): joined, not encoded again.
                body = f"{_VECTOR}{','.join(result)}]}}}}"
                _reply(self, 200, "application/json", body.encode())
            else:
                self._json(404, {"status": "error", "errorType": "not_found", "error": f"{path}: {_BANNER}"})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            _reply(self, status, "application/json", json.dumps(body, separators=(",", ":")).encode())

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


class QueryAPI:
    """A simulated cluster behind one Prometheus-compatible query API (:mod:`fleetscope.simulate.promql`).

    Args:
        cluster: the simulated cluster.
        host, port: where to listen (port 0: a free one).
        job: the ``job`` label its series carry.
        instances: each node's ``instance`` label by node name (default: the node's name).

    Raises:
        OSError: the port cannot be bound.
    """

    def __init__(
        self,
        cluster: SimulatedCluster,
        host: str = "127.0.0.1",
        port: int = 0,
        job: str = "fleetscope-exporter",
        instances: Mapping[str, str] | None = None,
    ) -> None:
        index = promql.SeriesIndex(cluster, job, instances)
        self._server = _Server((host, port), _query_handler(cluster, index))
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> QueryAPI:
        """Serve in a daemon thread; returns ``self``."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="sim-promql", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
