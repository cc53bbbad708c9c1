"""The live collector: the same correlation engine as ``fleetscope investigate``, fed on a schedule.

Every cycle the collector gathers what the cluster shows now into a *window*, a bundle folder laid out
exactly like an offline one (one subfolder per node), investigates it with
:func:`fleetscope.collectors.investigate` and records the report in the
:class:`~fleetscope.collectors.incidents.IncidentStore`. Keeping the window a plain bundle means the live path
and the offline path share every parser, detector and the correlator, and an on-call engineer can copy the
window folder and re-run ``fleetscope investigate`` on it.

Sources (docs/design.md, "The shape"):

- :class:`ExporterSource`: the built-in scraper, the embedded default. Reads each exporter's
  ``/metrics`` (Prometheus text) and ``/events`` (the kernel-log lines it watched) straight from the
  node.
- :class:`PromQLSource`: any Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir,
  VictoriaMetrics, AMP). One instant query per cycle for fleetscope's, dcgm-exporter's and
  node_exporter's GPU and fabric series, grouped into nodes by the ``instance`` target label.

A source implements ``fetch() -> dict[node, NodeSnapshot]`` and may raise :class:`SourceError`; a failing
source is counted in ``fleetscope_collector_source_errors_total`` and the cycle goes on with the others;
what a source could not read (a dead exporter among live ones) it lists in ``skipped``. The report of
every cycle names all of it in ``notes``; a cycle in which no source answered raises
:class:`CollectionError` rather than report a healthy cluster nobody looked at.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.error import URLError
from urllib.parse import urlencode, urlsplit
from urllib.request import urlopen

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from fleetscope.collectors.alerting import WebhookSender
from fleetscope.collectors.incidents import RESOLVED, Change, Incident, IncidentStore
from fleetscope.collectors.investigate import investigate

log = logging.getLogger(__name__)

#: A kernel line that already starts with its uptime stamp, ``[ 1843.308145] ...``.
_UPTIME_STAMP = re.compile(r"\s*\[\s*\d+\.\d+\]")
#: Series the PromQL source reads: fleetscope's own, dcgm-exporter's, node_exporter's fabric and hwmon.
PROMQL_SELECTOR = '{__name__=~"fleetscope_.+|DCGM_FI_.+|node_infiniband_.+|node_hwmon_.+"}'


class SourceError(Exception):
    """A source could not be read this cycle (unreachable, bad status, malformed answer)."""


class CollectionError(Exception):
    """A cycle could not run: no source answered, or the window folder is not the collector's own."""


#: File that marks a folder as a collector window, so the collector only ever replaces its own.
WINDOW_MARKER = ".fleetscope-window"


def http_url(address: str) -> str:
    """Check an HTTP address given by a user and return it as a URL.

    Args:
        address: ``host:port`` (``http://`` is assumed) or an ``http(s)://`` URL.

    Raises:
        ValueError: the address has no host, another scheme, spaces or control characters.
    """
    url = address if "//" in address else f"http://{address}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise ValueError(f"{address!r} is not an HTTP address (host:port or http://host:port)")
    try:
        parts.port  # noqa: B018 - a non-numeric or out-of-range port raises here
    except ValueError as exc:
        raise ValueError(f"{address!r}: {exc}") from None
    return url.rstrip("/")


@dataclass
class NodeSnapshot:
    """What one node showed in one cycle.

    Attributes:
        metrics: Prometheus text exposition of the node's series.
        kernel_lines: raw kernel-log lines (as the node printed them), oldest first.
    """

    metrics: str = ""
    kernel_lines: list[str] = field(default_factory=list)


class Source(Protocol):
    """Where a cycle's evidence comes from.

    Attributes:
        skipped: what the last :meth:`fetch` could not read though it read something else (one dead
            exporter among several), one line each; the cycle's report lists them in ``notes``.
    """

    skipped: list[str]

    def fetch(self) -> dict[str, NodeSnapshot]:
        """Read every node this source knows. Raises SourceError."""
        ...


def _get(url: str, timeout: float) -> bytes:
    try:
        with urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except (URLError, OSError, ValueError) as exc:
        raise SourceError(f"GET {url}: {exc}") from exc


def node_name(address: str) -> str:
    """The node a target address names: the host part of ``host:port`` or of a URL."""
    host = urlsplit(address if "//" in address else f"//{address}").hostname
    return host or address


def _kernel_line(event: dict[str, Any]) -> str:
    """Write an exporter ``/events`` entry back as a ``dmesg`` line, the form the kernel-log parser reads.

    The exporter's ``raw`` field keeps the source's own framing (``/dev/kmsg`` records, journald JSON);
    ``message`` is the kernel's text and ``uptime_seconds`` its monotonic stamp.
    """
    uptime = event.get("uptime_seconds")
    message = str(event["message"])
    if not isinstance(uptime, int | float) or _UPTIME_STAMP.match(message):
        return message  # a line from a dmesg-style file keeps its own stamp
    return f"[{float(uptime):12.6f}] {message}"


class ExporterSource:
    """Reads ``fleetscope exporter`` endpoints directly.

    Args:
        targets: exporter base URLs or ``host:port`` pairs (``http://`` is assumed).
        timeout: seconds allowed for each HTTP request.

    Raises:
        ValueError: a target is not an HTTP address.
    """

    def __init__(self, targets: Sequence[str], timeout: float = 10.0) -> None:
        self.targets = [http_url(t) for t in targets]
        self.timeout = timeout
        self.skipped: list[str] = []

    def fetch(self) -> dict[str, NodeSnapshot]:
        """Read ``/metrics`` and ``/events`` of every target; unreachable targets are skipped.

        Raises:
            SourceError: no target answered.
        """
        snapshots: dict[str, NodeSnapshot] = {}
        errors: list[str] = []
        for base in self.targets:
            try:
                metrics = _get(base + "/metrics", self.timeout).decode("utf-8", "replace")
                events = json.loads(_get(base + "/events", self.timeout))
            except (SourceError, json.JSONDecodeError) as exc:
                errors.append(str(exc))
                continue
            lines = [
                _kernel_line(e) for e in events.get("events", []) if isinstance(e, dict) and e.get("message")
            ]
            snapshots[node_name(base)] = NodeSnapshot(metrics=metrics, kernel_lines=lines)
        if errors and not snapshots:
            raise SourceError("; ".join(errors))
        for error in errors:
            log.warning("exporter target skipped this cycle: %s", error)
        self.skipped = errors
        return snapshots


class _Samples(Collector):
    """Re-exposes PromQL query results so they can be written with prometheus-client's exposition."""

    def __init__(self, results: list[dict[str, Any]]) -> None:
        self.results = results

    def collect(self) -> list[Metric]:
        families: dict[str, Metric] = {}
        for result in self.results:
            labels = dict(result["metric"])
            name = labels.pop("__name__")
            for target_label in ("instance", "job"):
                labels.pop(target_label, None)
            family = families.setdefault(name, Metric(name, "read through the PromQL API", "untyped"))
            family.add_sample(name, labels, float(result["value"][1]))
        return list(families.values())


class PromQLSource:
    """Reads the current value of GPU and fabric series from a Prometheus-compatible HTTP API.

    Args:
        url: the API's base URL, e.g. ``http://prometheus:9090`` (``/api/v1/query`` is appended).
        timeout: seconds allowed for the query.

    Raises:
        ValueError: ``url`` is not an HTTP address.
    """

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = http_url(url)
        self.skipped: list[str] = []  # one query: it answers whole or not at all
        self.timeout = timeout

    def fetch(self) -> dict[str, NodeSnapshot]:
        """One instant query, split into nodes by the ``instance`` label.

        Raises:
            SourceError: the API is unreachable or answered with an error.
        """
        query = urlencode({"query": PROMQL_SELECTOR})
        try:
            answer = json.loads(_get(f"{self.url}/api/v1/query?{query}", self.timeout))
        except json.JSONDecodeError as exc:
            raise SourceError(f"{self.url} answered with something that is not JSON: {exc}") from exc
        if answer.get("status") != "success":
            raise SourceError(f"{self.url}: {answer.get('errorType')}: {answer.get('error')}")
        by_node: dict[str, list[dict[str, Any]]] = {}
        for result in answer["data"]["result"]:
            node = node_name(result["metric"].get("instance", "unknown"))
            by_node.setdefault(node, []).append(result)
        snapshots = {}
        for node, results in by_node.items():
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Samples(results))
            snapshots[node] = NodeSnapshot(metrics=generate_latest(registry).decode())
        return snapshots


class LiveCollector:
    """Runs cycles: gather a window from the sources, investigate it, record incidents.

    Args:
        sources: where evidence comes from.
        store: the incident store reports go to.
        window_dir: the folder the window bundle is written into, replaced on every cycle; it must
            not exist yet or be a window this collector wrote (it holds :data:`WINDOW_MARKER`).
        kernel_history: how many kernel-log lines per node the window keeps across cycles.
        registry: where the collector's own metrics are registered.
        on_incident: called with each recorded incident (e.g. to link it into the lineage graph); an
            exception it raises is logged and counted, never fatal to the cycle.
        resolve_after: an open incident whose fault no window has shown for this long is resolved.
        alerts: sends a notification when an incident opens, reopens or resolves; None for none.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        store: IncidentStore,
        window_dir: Path,
        kernel_history: int = 5000,
        registry: CollectorRegistry | None = None,
        on_incident: Callable[[Incident], object] | None = None,
        resolve_after: timedelta = timedelta(minutes=10),
        alerts: WebhookSender | None = None,
    ) -> None:
        self.sources = list(sources)
        self.store = store
        self.on_incident = on_incident
        self.resolve_after = resolve_after
        self.alerts = alerts
        self.window_dir = Path(window_dir)
        self._kernel: dict[str, deque[str]] = {}
        self._kernel_history = kernel_history
        self.registry = registry or CollectorRegistry()
        self._cycles = Counter(
            "fleetscope_collector_cycles_total", "Collection cycles run.", registry=self.registry
        )
        self._errors = Counter(
            "fleetscope_collector_source_errors_total",
            "Cycles in which a source could not be read.",
            registry=self.registry,
        )
        self._duration = Histogram(
            "fleetscope_collector_cycle_duration_seconds",
            "Time to gather, investigate and record one window.",
            registry=self.registry,
        )
        self._incident = Gauge(
            "fleetscope_collector_incident_active",
            "1 when the latest window shows an incident, else 0.",
            registry=self.registry,
        )
        self._export_errors = Counter(
            "fleetscope_collector_incident_export_errors_total",
            "Incidents the on_incident hook (the lineage graph) failed to take.",
            registry=self.registry,
        )
        self._nodes = Gauge(
            "fleetscope_collector_nodes", "Nodes seen in the latest window.", registry=self.registry
        )
        self._open = Gauge(
            "fleetscope_collector_incidents_open",
            "Incidents open after the latest cycle (reported, and not yet quiet for the resolve time).",
            registry=self.registry,
        )
        self._changes = Counter(
            "fleetscope_collector_incident_changes_total",
            "Incident lifecycle changes: opened, updated, reopened, resolved.",
            ["change"],
            registry=self.registry,
        )

    def _gather(self) -> tuple[dict[str, NodeSnapshot], list[str]]:
        """Read every source; return the nodes and one line per thing that could not be read."""
        nodes: dict[str, NodeSnapshot] = {}
        errors = []
        skipped = []
        for source in self.sources:
            try:
                for node, snapshot in source.fetch().items():
                    merged = nodes.setdefault(node, NodeSnapshot())
                    merged.metrics += snapshot.metrics
                    merged.kernel_lines += snapshot.kernel_lines
                skipped += [f"not read this cycle: {problem}" for problem in source.skipped]
            except SourceError as exc:
                self._errors.inc()
                errors.append(f"{type(source).__name__}: {exc}")
                log.warning("source %s failed this cycle: %s", type(source).__name__, exc)
        if errors and len(errors) == len(self.sources):
            # Investigating an empty window would report a healthy cluster that nobody looked at.
            raise CollectionError("no source could be read: " + "; ".join(errors))
        return nodes, [f"not read this cycle: {error}" for error in errors] + skipped

    def _write_window(self, nodes: dict[str, NodeSnapshot]) -> None:
        staging = self.window_dir.with_name(self.window_dir.name + ".new")
        for folder in (self.window_dir, staging):
            if folder.exists() and not (folder / WINDOW_MARKER).exists():
                raise CollectionError(
                    f"{folder} exists and is not a fleetscope window; refusing to replace it"
                )
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        (staging / WINDOW_MARKER).write_text("written by fleetscope collect; replaced every cycle\n")
        for node, snapshot in nodes.items():
            folder = staging / node
            folder.mkdir()
            if snapshot.metrics:
                (folder / "metrics.prom").write_text(snapshot.metrics)
            history = self._kernel.setdefault(node, deque(maxlen=self._kernel_history))
            # An exporter's /events is a ring buffer that overlaps the previous cycle's.
            seen = set(history)
            history.extend(line for line in snapshot.kernel_lines if line not in seen)
            if history:
                (folder / "kernel.log").write_text("\n".join(history) + "\n")
        # Swap in the new window whole, so a reader never sees half of one.
        shutil.rmtree(self.window_dir, ignore_errors=True)
        staging.rename(self.window_dir)

    def run_once(self) -> dict[str, Any]:
        """One cycle.

        Returns:
            The investigation report of the window (docs/design.md JSON contract).

        Raises:
            CollectionError: no source could be read, or the window folder is not the collector's.
        """
        started = time.perf_counter()
        nodes, unread = self._gather()
        self._write_window(nodes)
        report = investigate(self.window_dir).to_dict()
        report["notes"] = unread + report.get("notes", [])
        recorded = self.store.record(report)
        changes: list[Change] = [recorded] if recorded else []
        changes += self.store.resolve_quiet(self.resolve_after)
        for change in changes:
            self._changes.labels(change.kind).inc()
            if change.kind != "updated":
                log.warning(
                    "incident %s %s: %s", change.incident.fingerprint, change.kind, change.incident.summary
                )
            if change.kind != RESOLVED and self.on_incident is not None:
                try:
                    self.on_incident(change.incident)
                except Exception as exc:  # the incident is in the store; the graph can take it next cycle
                    self._export_errors.inc()
                    log.error(
                        "incident %s not exported: %s: %s",
                        change.incident.fingerprint,
                        type(exc).__name__,
                        exc,
                    )
        if self.alerts is not None:
            self.alerts.send(changes)
        self._cycles.inc()
        self._nodes.set(len(nodes))
        self._incident.set(1 if report.get("incident") else 0)
        still_open = self.store.count("open")
        self._open.set(still_open)
        self._duration.observe(time.perf_counter() - started)
        log.info("cycle: %d nodes read, %d incidents open", len(nodes), still_open)
        return report

    def run_forever(self, interval: float) -> None:
        """Run a cycle every ``interval`` seconds until interrupted; a failed cycle is logged and skipped."""
        while True:
            started = time.monotonic()
            try:
                self.run_once()
            except CollectionError as exc:
                log.error("cycle skipped: %s", exc)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
