"""Network latency probe between peer nodes: libfabric's ``fi_pingpong`` where present, else TCP.

Every exporter with this collector on answers probes and probes its configured peers (a bounded list,
``peers``: ``host`` or ``host:port`` of the peers' probe responders), every ``interval_seconds``:

* **fabric** (``transport`` = the libfabric provider, ``efa`` by default): when ``fi_pingpong`` (Debian
  ``libfabric-bin``, fabtests) is installed and ``provider`` is set, the exporter keeps an
  ``fi_pingpong`` server running on ``fabric_port`` and runs the client against each peer's server
  (``-e rdm``, :data:`FI_ITERATIONS` transfers of :data:`FI_SIZE` bytes, which both sides must agree
  on). Its ``usec/xfer`` is one transfer; a round trip is two.
* **tcp** (``transport="tcp"``), when ``fi_pingpong`` is missing, the provider unset, or a fabric
  probe fails: :data:`TCP_ROUND_TRIPS` round trips of :data:`FI_SIZE` bytes over one connection to the
  peer's TCP echo responder, which this collector runs on ``listen_port``.

Each round trip lands in ``fleetscope_network_probe_rtt_seconds{peer,transport}``; a peer that cannot
be reached counts in ``fleetscope_network_probe_failures_total{peer,transport}``. Peers are label values,
so the list is capped (``max_peers``): probe a ring or a few neighbours, not the whole cluster.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator

from prometheus_client.core import Metric

from fleetscope.exporters.metrics import Histogram, MetricSpec, add
from fleetscope.exporters.registry import BuildContext, Setting, register

log = logging.getLogger(__name__)

FI_SIZE = 64
FI_ITERATIONS = 20
TCP_ROUND_TRIPS = 10
RTT_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.25, 1.0)

RTT = MetricSpec(
    "fleetscope_network_probe_rtt_seconds",
    "histogram",
    "Round trip of a small message to a peer node: 2x fi_pingpong's usec/xfer (transport = libfabric "
    "provider) or a TCP echo (transport=tcp).",
    "fi_pingpong, TCP echo",
    labels=("peer", "transport"),
)
FAILURES = MetricSpec(
    "fleetscope_network_probe_failures_total",
    "counter",
    "Probes of a peer that failed (unreachable, refused, timed out, or fi_pingpong failed).",
    "fi_pingpong, TCP echo",
    labels=("peer", "transport"),
)
METRICS = (RTT, FAILURES)
_USEC_PER_XFER = re.compile(rb"^\s*\d+\s+\d+\s+=\d+\s+\S+\s+\S+\s+\S+\s+(?P<usec>[0-9.]+)\s", re.M)


def parse_peer(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` to (host, port).

    Raises:
        ValueError: Not a peer address.
    """
    host, sep, port = text.strip().rpartition(":")
    if not sep or "]" in port:
        host, port = text.strip(), str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"netprobe peer {text!r} is not HOST or HOST:PORT")
    return host.strip("[]"), int(port)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(10)
        try:
            while data := self.request.recv(4096):
                self.request.sendall(data)
        except OSError:
            pass  # the prober went away


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class NetworkProbeCollector:
    """Probes peer nodes in a daemon thread and answers their probes.

    Args:
        peers: Peer responders, ``host`` or ``host:port`` (port default ``listen_port``).
        listen_address: ``HOST:PORT`` of this node's TCP echo responder (``:9848`` for every interface).
        interval: Seconds between probe rounds.
        provider: libfabric provider for ``fi_pingpong`` (``efa``, ``verbs``, ``tcp``); empty for TCP only.
        fabric_port: Control port of the ``fi_pingpong`` servers.
        timeout: Seconds one peer's probe may take.

    Raises:
        ValueError: A peer is not an address.
    """

    name = "netprobe"
    from_memory = True  # collect() copies what the probe threads measured

    def __init__(
        self,
        peers: list[str],
        listen_address: str = ":9848",
        interval: float = 30.0,
        provider: str = "efa",
        fabric_port: int = 47592,
        timeout: float = 5.0,
    ) -> None:
        host, _, port = listen_address.rpartition(":")
        self._listen = (host.strip("[]"), int(port))
        self.peers = [parse_peer(p, self._listen[1]) for p in peers]
        self._interval = interval
        self._provider = provider
        self._fabric_port = fabric_port
        self._timeout = timeout
        self._fi_pingpong = shutil.which("fi_pingpong") if provider else None
        self._histograms: dict[tuple[str, str], Histogram] = {}
        self._failures: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._echo: _EchoServer | None = None
        self._fabric_server: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The TCP echo responder's port (useful with port 0)."""
        return int(self._echo.server_address[1]) if self._echo is not None else self._listen[1]

    def start(self) -> NetworkProbeCollector:
        """Start the responders and the probe thread; returns ``self``."""
        try:
            self._echo = _EchoServer(self._listen, _Echo)
            threading.Thread(target=self._echo.serve_forever, name="netprobe-echo", daemon=True).start()
        except OSError as exc:
            log.warning("network probe: cannot answer TCP probes on %s:%d: %s", *self._listen, exc)
        if self._fi_pingpong:
            threading.Thread(target=self._serve_fabric, name="netprobe-fabric", daemon=True).start()
        threading.Thread(target=self._run, name="netprobe", daemon=True).start()
        return self

    def close(self) -> None:
        """Stop probing and answering."""
        self._stop.set()
        if self._echo is not None:
            self._echo.shutdown()
            self._echo.server_close()
        server = self._fabric_server
        if server is not None and server.poll() is None:
            server.kill()

    def _serve_fabric(self) -> None:
        # fi_pingpong's server answers one client and exits: keep one running.
        while not self._stop.is_set():
            command = [self._fi_pingpong or "fi_pingpong", "-p", self._provider, "-e", "rdm"]
            command += ["-B", str(self._fabric_port), "-I", str(FI_ITERATIONS), "-S", str(FI_SIZE)]
            try:
                self._fabric_server = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                self._fabric_server.wait()
            except OSError as exc:
                log.warning("network probe: fi_pingpong server: %s", exc)
            self._stop.wait(0.2 if self._fabric_server and self._fabric_server.returncode == 0 else 5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            for host, port in self.peers:
                if self._stop.is_set():
                    return
                try:
                    self._probe(host, port)
                except Exception:  # never let one peer end the probing of the others
                    log.exception("network probe of %s:%d failed", host, port)
            self._stop.wait(self._interval)

    def _probe(self, host: str, port: int) -> None:
        peer = f"{host}:{port}"
        if self._fi_pingpong:
            usec = self._fabric_round_trip(host)
            if usec is not None:
                self._observe(peer, self._provider, [2 * usec * 1e-6])
                return
            self._fail(peer, self._provider)
        try:
            self._observe(peer, "tcp", self._tcp_round_trips(host, port))
        except OSError as exc:
            log.debug("network probe of %s over TCP: %s", peer, exc)
            self._fail(peer, "tcp")

    def _fabric_round_trip(self, host: str) -> float | None:
        command = [self._fi_pingpong or "fi_pingpong", "-p", self._provider, "-e", "rdm"]
        command += ["-P", str(self._fabric_port), "-I", str(FI_ITERATIONS), "-S", str(FI_SIZE), host]
        try:
            result = subprocess.run(command, capture_output=True, timeout=self._timeout)
        except (OSError, subprocess.TimeoutExpired):
            return None
        match = _USEC_PER_XFER.search(result.stdout)
        return float(match["usec"]) if result.returncode == 0 and match else None

    def _tcp_round_trips(self, host: str, port: int) -> list[float]:
        payload = bytes(FI_SIZE)
        rtts = []
        with socket.create_connection((host, port), timeout=self._timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(TCP_ROUND_TRIPS):
                start = time.perf_counter()
                sock.sendall(payload)
                received = 0
                while received < len(payload):
                    chunk = sock.recv(len(payload) - received)
                    if not chunk:
                        raise ConnectionResetError("the peer closed the connection")
                    received += len(chunk)
                rtts.append(time.perf_counter() - start)
        return rtts

    def _observe(self, peer: str, transport: str, rtts: list[float]) -> None:
        with self._lock:
            histogram = self._histograms.setdefault((peer, transport), Histogram(RTT_BUCKETS))
            self._failures.setdefault((peer, transport), 0)
        for rtt in rtts:
            histogram.observe(rtt)

    def _fail(self, peer: str, transport: str) -> None:
        with self._lock:
            self._histograms.setdefault((peer, transport), Histogram(RTT_BUCKETS))
            self._failures[(peer, transport)] = self._failures.get((peer, transport), 0) + 1

    def collect(self) -> Iterator[Metric]:
        """Yield the probe histograms and failure counters."""
        rtt, failures = RTT.family(), FAILURES.family()
        with self._lock:
            histograms, failed = sorted(self._histograms.items()), dict(self._failures)
        for key, histogram in histograms:
            histogram.add_to(rtt, list(key))
            add(failures, list(key), float(failed.get(key, 0)))
        yield rtt
        yield failures


@register(
    "netprobe",
    "Round-trip latency to peer nodes: fi_pingpong (libfabric, EFA) where installed, else TCP echo.",
    default=False,
    settings=(
        Setting(
            "peers",
            str,
            "",
            "Comma-separated peers, HOST or HOST:PORT of their probe responders.",
            metavar="LIST",
        ),
        Setting(
            "listen_address", str, ":9848", "HOST:PORT of this node's TCP probe responder.", metavar="ADDRESS"
        ),
        Setting(
            "interval_seconds",
            float,
            30.0,
            "Seconds between probe rounds.",
            flag="interval",
            ge=0.1,
            le=3600,
            metavar="SECONDS",
        ),
        Setting(
            "provider",
            str,
            "efa",
            "libfabric provider for fi_pingpong (efa, verbs, tcp); empty: TCP only.",
            metavar="PROVIDER",
        ),
        Setting(
            "fabric_port",
            int,
            47592,
            "Control port of the fi_pingpong servers.",
            ge=1,
            le=65535,
            metavar="PORT",
        ),
        Setting(
            "max_peers", int, 64, "Most peers probed (each is a label value).", ge=1, le=1024, metavar="N"
        ),
    ),
)
def _build(ctx: BuildContext) -> NetworkProbeCollector:
    peers = [p for p in ctx.setting("peers").split(",") if p.strip()]
    if len(peers) > ctx.setting("max_peers"):
        raise ValueError(f"netprobe: {len(peers)} peers, more than max-peers {ctx.setting('max_peers')}")
    return NetworkProbeCollector(
        peers,
        ctx.setting("listen_address"),
        ctx.setting("interval_seconds"),
        ctx.setting("provider"),
        ctx.setting("fabric_port"),
    )
