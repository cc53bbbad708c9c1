"""The live collector: the same correlation engine as ``fleetscope investigate``, fed on a schedule.

Every cycle the collector gathers what the cluster shows now into a *window* (per node: metric samples
and kernel-log lines), hands the samples and lines straight to the engine
(:func:`fleetscope.collectors.investigate.investigate_window`: the same sample-to-evidence mapping, line
parsers, detectors and correlator as a bundle) and records the report in the
:class:`~fleetscope.collectors.incidents.IncidentStore`. Facts that need more than one window (a node
that stopped answering, a GPU whose series vanished, a peer deviation that persists, a rank that stopped
stepping) come from :class:`~fleetscope.collectors.history.WindowHistory` as series of the node's window,
so they are evidence like any other sample. With ``window_dir`` the window is also written as a bundle
folder (one subfolder per node: ``metrics.prom``, ``kernel.log``) that ``fleetscope investigate``
reads to the same report.

Sources (docs/design.md, "The shape"):

- :class:`ExporterSource`: the built-in scraper, the embedded default. Reads each exporter's
  ``/metrics`` (Prometheus text) and ``/events`` (the kernel-log lines it watched) straight from the
  node.
- :class:`FileSDSource`: the exporters a Prometheus ``file_sd`` JSON file lists, re-read every cycle.
- :class:`PromQLSource`: any Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir,
  VictoriaMetrics, AMP). Two instant queries per cycle (now, and ``offset`` the window) for fleetscope's,
  dcgm-exporter's and node_exporter's GPU and fabric series, grouped into nodes by the ``instance``
  target label, and one for the targets whose scrape fails (``up`` at 0).

**Time windows.** A window covers the last ``window`` seconds (default 5 minutes). Counters appear in it as
their increase over the window, and a counter that did not rise is left out, so a fault counted weeks ago
is not reported again every cycle: :class:`ExporterSource` keeps earlier scrapes of each target and
subtracts the one from the window's start (the first scrape of a target is only a baseline; every
scrape of one cycle is stamped with the cycle's start, so all targets' windows start at scrapes of the
same earlier cycle and differ only by where a target falls in the cycle's order, never by a cycle), and
:class:`PromQLSource` reads the same series ``offset`` the window and subtracts. Gauges appear with
their latest value. Kernel-log events stay in the window while they are younger than it: by their own
wall-clock time where the exporter has one (journald), else by when the collector first saw them; the
events an exporter still holds when the collector first reads it are a baseline too.

A source implements ``fetch() -> dict[node, NodeSnapshot]`` and may raise :class:`SourceError`; a failing
source is counted in ``fleetscope_collector_source_errors_total`` and the cycle goes on with the others;
what a source could not read (a dead exporter among live ones) it lists in ``skipped``. The report of
every cycle names all of it in ``notes``; a cycle in which no source answered raises
:class:`CollectionError` rather than report a healthy cluster nobody looked at.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.client import HTTPException
from pathlib import Path
from typing import Any, Protocol
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit
from urllib.request import urlopen

import ijson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from fleetscope.collectors.alerting import WebhookSender
from fleetscope.collectors.history import WindowHistory
from fleetscope.collectors.incidents import RESOLVED, Change, Incident, IncidentStore
from fleetscope.collectors.investigate import investigate_window

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


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one bulk step (a fetch, a detection pass).

    Reference counting still frees every object; only the search for reference cycles waits. A step
    that makes hundreds of thousands of objects (decoded JSON, evidence) while as many stay alive (the
    window) otherwise triggers collection after collection, each walking every live object: half the CPU
    time of a fetch or a pass at 512 to 2,048 nodes (benchmarks/README.md, "Live detection"). The
    collector's own objects hold no cycles, so nothing waits long. Restores the previous state.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
        families: the node's metric families in the window (counters as increases), as
            prometheus-client reads them.
        kernel_lines: raw kernel-log lines (as the node printed them), oldest first.
        time: the source's own time of the samples, Unix seconds: when the collector's scrape of the
            exporter began, or the evaluation time a PromQL API stamped on its answer (the simulator's
            simulated clock included); None where unknown. Gauges that hold a Unix time (a rank's last
            step) are read against it, never against the collector's clock at a later moment.
    """

    families: list[Metric] = field(default_factory=list)
    kernel_lines: list[str] = field(default_factory=list)
    time: float | None = None


class Source(Protocol):
    """Where a cycle's evidence comes from.

    Attributes:
        skipped: what the last :meth:`fetch` could not read though it read something else (one dead
            exporter among several), one line each; the cycle's report lists them in ``notes``.
        down: the nodes the last :meth:`fetch` should have read and could not (their exporter did not
            answer, or their series left the API during the window).
    """

    skipped: list[str]
    down: list[str]

    def fetch(self) -> dict[str, NodeSnapshot]:
        """Read every node this source knows. Raises SourceError."""
        ...


#: A sample's identity: its name and sorted labels.
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]

_COUNTER_NAME = re.compile(r"(?i).*(_total|_counter)$")
#: Samples of a histogram or summary that only grow: the count, the sum and the cumulative buckets.
_HISTOGRAM_COUNTERS = ("_sum", "_count", "_bucket")


def is_counter_sample(name: str, family_type: str = "untyped") -> bool:
    """Whether a sample only grows (a counter, or a histogram's or summary's ``_sum``, ``_count`` and
    ``_bucket``): its family says so, or (for untyped series read through a PromQL API, which carries no
    types) its name ends ``_total`` or ``_COUNTER`` (dcgm-exporter), or is a histogram's part of a
    fleetscope series. A ``_created`` sample (when a counter was made) is none."""
    if name.endswith("_created"):
        return False
    if family_type == "counter":
        return True
    if family_type in ("histogram", "summary"):
        return name.endswith(_HISTOGRAM_COUNTERS)
    return family_type == "untyped" and (
        _COUNTER_NAME.match(name) is not None
        or (name.startswith("fleetscope_") and name.endswith(_HISTOGRAM_COUNTERS))
    )


def _key(name: str, labels: dict[str, str]) -> SeriesKey:
    return name, tuple(sorted(labels.items()))


def increase(now: float, then: float | None) -> float:
    """A counter's rise from ``then`` to ``now``; a drop means it was reset (a restart), so all of
    ``now`` is new. ``then`` None: the series did not exist at the window's start, so all of it is new."""
    if then is None or now < then:
        return now
    return now - then


def window_families(
    text: str, start: dict[SeriesKey, float] | None
) -> tuple[list[Metric], dict[SeriesKey, float]]:
    """Turn one scrape into the window's view of it.

    Args:
        text: a Prometheus text exposition scraped now.
        start: counter values at the window's start (:func:`window_families`' second return value
            from an earlier scrape), or None when there is no earlier scrape: then every counter's
            increase is 0 and the scrape is only a baseline.

    Returns:
        ``(families, counters)``: the families with gauges as they are and counters (histograms' sums,
        counts and buckets too) replaced by their increase (counters that did not rise, and ``_created``
        samples, left out), samples named as the exporter wrote them, and this scrape's counter values for
        later windows.

    Raises:
        ValueError: the text is not a Prometheus exposition (prometheus-client's parser).
    """
    families = []
    counters: dict[SeriesKey, float] = {}
    exposed = {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line[:1] not in "#"}
    for family in text_string_to_metric_families(text):
        # The client's parser adds "_total" to a counter exposed without it (dcgm-exporter's
        # DCGM_FI_DEV_XID_ERRORS); the window keeps the name as the exporter wrote it, untyped, since the
        # writer would add "_total" back to a counter family.
        renamed = (
            family.type == "counter" and family.name in exposed and f"{family.name}_total" not in exposed
        )
        kept = Metric(family.name, family.documentation, "untyped" if renamed else family.type, family.unit)
        for sample in family.samples:
            name = family.name if renamed and sample.name == f"{family.name}_total" else sample.name
            if family.type in ("counter", "histogram", "summary") and name.endswith("_created"):
                continue  # when the counter was made: no evidence
            if not is_counter_sample(name, family.type):
                kept.add_sample(name, sample.labels, sample.value)
                continue
            key = _key(name, sample.labels)
            counters[key] = sample.value
            rise = 0.0 if start is None else increase(sample.value, start.get(key))
            if rise > 0:
                kept.add_sample(name, sample.labels, rise)
        if kept.samples:
            families.append(kept)
    return families, counters


def exposition(families: Sequence[Metric]) -> str:
    """The Prometheus text exposition of ``families`` (prometheus-client's writer)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families)))
    return generate_latest(registry).decode()


def _get(url: str, timeout: float) -> bytes:
    try:
        with urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except (URLError, OSError, ValueError) as exc:
        raise SourceError(f"GET {url}: {exc}") from exc


def _status(exc: SourceError) -> int | None:
    """The HTTP status a source error carries, or None where nothing answered (refused, timed out)."""
    return exc.__cause__.code if isinstance(exc.__cause__, HTTPError) else None


def node_name(address: str) -> str:
    """The node a target address names: the host part of ``host:port`` or of a URL."""
    host = urlsplit(address if "//" in address else f"//{address}").hostname
    return host or address


def _kernel_line(event: dict[str, Any], node: str) -> str:
    """Write an exporter ``/events`` entry back as a kernel-log line the kernel-log parser reads.

    ``message`` is the kernel's text; ``time`` its wall-clock time (ISO 8601, journald) and
    ``uptime_seconds`` its monotonic stamp, where the source had them. A wall-clock time is kept as an
    RFC 3339 syslog line (``TIME NODE kernel: MESSAGE``), an uptime as a ``dmesg`` line.
    """
    message = str(event["message"])
    when = _event_time(event)
    if when is not None:
        return f"{when.isoformat()} {node} kernel: {message}"
    uptime = event.get("uptime_seconds")
    if not isinstance(uptime, int | float) or _UPTIME_STAMP.match(message):
        return message  # a line from a dmesg-style file keeps its own stamp
    return f"[{float(uptime):12.6f}] {message}"


def _event_time(event: dict[str, Any]) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(event["time"])) if event.get("time") else None
    except ValueError:
        return None
    return when if when is None or when.tzinfo else when.replace(tzinfo=UTC)


class _Families(Collector):
    """Serves ready-made metric families, so prometheus-client writes the exposition."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def target_nodes(targets: Sequence[str]) -> dict[str, str]:
    """Name the node behind each exporter target.

    Args:
        targets: ``host:port``, a URL, or ``NAME=host:port`` to name the node yourself.

    Returns:
        ``{base URL: node}``. A node is its host, or ``host:port`` where several targets share a host
        (exporters behind SSH tunnels on one machine), so that no two targets fold into one node.

    Raises:
        ValueError: a target is not an HTTP address, or two targets get the same node name.
    """
    named: list[tuple[str, str | None]] = []
    for target in targets:
        given, sep, address = target.partition("=")
        named.append((http_url(address), given) if sep and "//" not in given else (http_url(target), None))
    hosts = [node_name(url) for url, label in named if label is None]
    nodes: dict[str, str] = {}
    for url, label in named:
        host = node_name(url)
        node = label or (host if hosts.count(host) == 1 else urlsplit(url).netloc)
        if node in nodes.values() or url in nodes:
            raise ValueError(f"two targets name the same node {node!r}: give each a NAME=host:port")
        nodes[url] = node
    return nodes


class ExporterSource:
    """Reads ``fleetscope exporter`` endpoints directly, into windows (module docstring, "Time windows").

    Args:
        targets: exporter addresses: ``host:port`` (``http://`` is assumed), URLs, or ``NAME=host:port``.
        timeout: seconds allowed for each HTTP request.
        window: how far back a window reaches.
        clock: monotonic seconds (injected by tests).
        held_events_are_recent: count the kernel-log events an exporter holds when first read (and that
            carry no wall-clock time) as inside the window, instead of as a baseline: for a one-off look
            (``fleetscope collect --once``), which has no earlier read to compare with.

    Raises:
        ValueError: a target is not an HTTP address, or two name the same node.
    """

    def __init__(
        self,
        targets: Sequence[str],
        timeout: float = 10.0,
        window: timedelta = timedelta(minutes=5),
        clock: Callable[[], float] = time.monotonic,
        held_events_are_recent: bool = False,
    ) -> None:
        self.held_events_are_recent = held_events_are_recent
        self.timeout = timeout
        self.window = window.total_seconds()
        self.clock = clock
        self.skipped: list[str] = []
        self.down: list[str] = []
        # Per target: counter values of earlier scrapes, oldest first, and when each kernel line was seen.
        self._scrapes: dict[str, deque[tuple[float, dict[SeriesKey, float]]]] = {}
        self._seen: dict[str, dict[str, float]] = {}
        self.nodes: dict[str, str] = {}
        self.targets: list[str] = []
        self.set_targets(targets)

    def set_targets(self, targets: Sequence[str]) -> None:
        """Replace the targets; what was kept of a target no longer listed is dropped.

        Raises:
            ValueError: a target is not an HTTP address, or two name the same node.
        """
        self.nodes = target_nodes(targets)
        self.targets = list(self.nodes)
        for gone in set(self._scrapes) - set(self.nodes):
            del self._scrapes[gone]
            self._seen.pop(gone, None)

    def _window_start(self, base: str, now: float) -> dict[SeriesKey, float] | None:
        """Counter values of the latest scrape at or before the window's start (else the oldest one)."""
        scrapes = self._scrapes.get(base)
        if not scrapes:
            return None
        while len(scrapes) > 1 and scrapes[1][0] <= now - self.window:
            scrapes.popleft()
        return scrapes[0][1]

    def _kernel_lines(self, base: str, events: list[Any], now: float) -> list[str]:
        first_read = base not in self._seen and not self.held_events_are_recent
        seen = self._seen.setdefault(base, {})
        wall_start = datetime.now(UTC) - timedelta(seconds=self.window)
        lines = []
        current = set()
        for event in events:
            if not isinstance(event, dict) or not event.get("message"):
                continue
            line = _kernel_line(event, self.nodes[base])
            current.add(line)
            when = _event_time(event)
            if when is not None:
                if when >= wall_start:
                    lines.append(line)
                continue
            # No wall-clock time: place the line by when this collector first saw it.
            first_seen = seen.setdefault(line, float("-inf") if first_read else now)
            if first_seen >= now - self.window:
                lines.append(line)
        for line in [line for line in seen if line not in current]:
            del seen[line]  # gone from the exporter's ring buffer, so it cannot come back as new
        return lines

    def fetch(self) -> dict[str, NodeSnapshot]:
        """Read ``/metrics`` and ``/events`` of every target; unreachable targets are skipped.

        Raises:
            SourceError: no target answered.
        """
        snapshots: dict[str, NodeSnapshot] = {}
        errors: list[str] = []
        down: list[str] = []
        # One time for the whole cycle (module docstring): stamped per target, a slow cycle would start
        # the windows of the targets read late in it at a later cycle's scrapes than the others'.
        now = self.clock()
        for base in self.targets:
            try:
                scraped = time.time()  # a scrape's time is when it began, as Prometheus stamps one
                text = _get(base + "/metrics", self.timeout).decode("utf-8", "replace")
                try:
                    events = json.loads(_get(base + "/events", self.timeout))
                except SourceError as exc:
                    if _status(exc) != 404:
                        raise
                    events = {}  # dcgm-exporter, node_exporter: metrics only, no kernel-log events
                families, counters = window_families(text, self._window_start(base, now))
            except (SourceError, json.JSONDecodeError, ValueError) as exc:
                errors.append(f"{base}: {exc}" if base not in str(exc) else str(exc))
                if isinstance(exc, SourceError) and _status(exc) is None:
                    down.append(self.nodes[base])  # no answer at all (refused, timed out): it is missing
                continue
            self._scrapes.setdefault(base, deque()).append((now, counters))
            lines = self._kernel_lines(
                base, events.get("events", []) if isinstance(events, dict) else [], now
            )
            snapshots[self.nodes[base]] = NodeSnapshot(families=families, kernel_lines=lines, time=scraped)
        self.down = down
        if errors and not snapshots:
            raise SourceError("; ".join(errors))
        for error in errors:
            log.warning("exporter target skipped this cycle: %s", error)
        self.skipped = errors
        return snapshots


class FileSDSource:
    """Exporter targets listed in a Prometheus ``file_sd`` JSON file, re-read every cycle.

    The file is a list of ``{"targets": ["host:port", ...], "labels": {...}}`` groups (Prometheus's
    ``file_sd_config`` format, as ``fleetscope install`` writes it); a ``node`` label names the node of
    every target of its group. Reading is then as :class:`ExporterSource`.

    Args:
        path: the JSON file.
        timeout, window, held_events_are_recent: as for :class:`ExporterSource`.
    """

    def __init__(
        self,
        path: Path,
        timeout: float = 10.0,
        window: timedelta = timedelta(minutes=5),
        held_events_are_recent: bool = False,
    ) -> None:
        self.path = Path(path)
        self.skipped: list[str] = []
        self.down: list[str] = []
        self._exporters = ExporterSource(
            [], timeout=timeout, window=window, held_events_are_recent=held_events_are_recent
        )

    def targets(self) -> list[str]:
        """The targets the file lists now, as ``NAME=host:port`` where a ``node`` label names them.

        Raises:
            SourceError: the file is missing, not JSON, or not in file_sd's shape.
        """
        try:
            groups = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SourceError(f"targets file {self.path}: {exc}") from exc
        if not isinstance(groups, list) or not all(
            isinstance(g, dict) and isinstance(g.get("targets"), list) for g in groups
        ):
            raise SourceError(f"targets file {self.path}: not a file_sd list of {{targets, labels}} groups")
        found = []
        for group in groups:
            node = (group.get("labels") or {}).get("node")
            for address in group["targets"]:
                found.append(f"{node}={address}" if node and len(group["targets"]) == 1 else str(address))
        return found

    def fetch(self) -> dict[str, NodeSnapshot]:
        """Re-read the file and read every exporter it lists.

        Raises:
            SourceError: the file cannot be read, a target in it is bad, or no target answered.
        """
        try:
            self._exporters.set_targets(self.targets())
        except ValueError as exc:
            raise SourceError(f"targets file {self.path}: {exc}") from exc
        if not self._exporters.targets:
            raise SourceError(f"targets file {self.path} lists no targets")
        try:
            snapshots = self._exporters.fetch()
        finally:
            self.down = self._exporters.down
        self.skipped = self._exporters.skipped
        return snapshots


class PromQLSource:
    """Reads GPU and fabric series from a Prometheus-compatible HTTP API, into windows.

    Two instant queries per cycle: the series now, and the same series ``offset`` the window; a
    counter's increase is the difference (module docstring, "Time windows"). A third, ``up``, names the
    targets Prometheus cannot scrape (value 0); they and the instances that had series at the window's
    start and have none now are :attr:`down`.

    Args:
        url: the API's base URL, e.g. ``http://prometheus:9090`` (``/api/v1/query`` is appended).
        timeout: seconds allowed for each query.
        window: how far back a window reaches (whole seconds).

    Raises:
        ValueError: ``url`` is not an HTTP address.
    """

    def __init__(self, url: str, timeout: float = 30.0, window: timedelta = timedelta(minutes=5)) -> None:
        self.url = http_url(url)
        self.skipped: list[str] = []  # the queries answer whole or not at all
        self.down: list[str] = []
        self.timeout = timeout
        self.window = max(1, int(window.total_seconds()))

    def _query(self, query: str) -> Iterator[dict[str, Any]]:
        """The series of one instant query's answer (``{"metric": labels, "value": [time, "value"]}``),
        one at a time as ijson decodes them, so no whole answer (hundreds of MB of JSON at 2,048 nodes,
        several GB decoded) is held in memory.

        The answer is first copied to a temporary file (in ``TMPDIR``, deleted when read) at the speed
        of the network, then decoded from it: a server that bounds how long it takes to send an answer
        (the simulator's API allows 30 s; proxies in front of Thanos or Mimir do the same) is never held
        up by the decoding. Its envelope (``status``, ``errorType``, ``error``), which
        Prometheus-compatible APIs write before the result, is checked from the file's first bytes
        before any series is read.

        Raises:
            SourceError: the API is unreachable, answered with an HTTP error, with something that is not
                JSON, or with a status other than ``success`` (``errorType`` and ``error`` quoted).
        """
        url = f"{self.url}/api/v1/query?{urlencode({'query': query})}"
        with tempfile.TemporaryFile() as answer:
            try:
                with urlopen(url, timeout=self.timeout) as response:
                    shutil.copyfileobj(response, answer, _COPY_BYTES)
            except (URLError, OSError, ValueError, HTTPException) as exc:
                raise SourceError(f"GET {url}: {exc}") from exc
            answer.seek(0)
            envelope = _envelope(answer.read(_HEAD_BYTES))
            if envelope is None:
                raise SourceError(f"{self.url} answered with something that is not JSON")
            if envelope.get("status") != "success":
                raise SourceError(f"{self.url}: {envelope.get('errorType')}: {envelope.get('error')}")
            answer.seek(0)
            try:
                yield from ijson.items(answer, "data.result.item", use_float=True)
            except ijson.JSONError as exc:  # JSON cut off where the connection closed, or broken inside
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise SourceError(f"{self.url} answered with something that is not JSON: {first}") from exc

    def fetch(self) -> dict[str, NodeSnapshot]:
        """The window of every node, split by the ``instance`` label (its host, or ``host:port`` where
        several instances share a host): per node one untyped family per series name.

        Each answer is decoded series by series (ijson, from a temporary copy: :meth:`_query`) into the
        start's counter values (one short key per counter that is not 0: :func:`_promql_key`) and then
        the window's families (each label name and value held once), so no whole answer is ever held in
        memory (at 2,048 nodes each is hundreds of MB of JSON, several GB decoded).

        Raises:
            SourceError: the API is unreachable or answered with an error.
        """
        with gc_paused():
            return self._fetch()

    def _fetch(self) -> dict[str, NodeSnapshot]:
        self.down = []
        counters: dict[str, bool] = {}  # per series name: whether it only grows

        def counter(name: str) -> bool:
            known = counters.get(name)
            if known is None:
                known = counters[name] = is_counter_sample(name)
            return known

        start: dict[str, dict[str | frozenset[tuple[str, str]], float]] = {}
        started: dict[str, set[str]] = {}  # per instance, the names of the counters with a start value
        for result in self._query(f"{PROMQL_SELECTOR} offset {self.window}s"):
            metric = result["metric"]
            instance = metric.get("instance", "unknown")
            values = start.setdefault(instance, {})
            names = started.setdefault(instance, set())
            # Gauges need no start value, nor does a counter at 0: its rise is its value now, as for a
            # counter with no start (:func:`increase`), and most error counters of a cluster are 0.
            if counter(metric["__name__"]):
                value = float(result["value"][1])
                if value != 0:
                    values[_promql_key(metric)] = value
                    names.add(metric["__name__"])
        by_instance: dict[str, dict[str, Metric]] = {}
        # One copy of each label name and value the window's samples hold (the decoder makes a string per
        # occurrence: a GPU's "gpu" and "3" in each of its hundreds of series).
        strings: dict[str, str] = {}
        one = strings.setdefault
        evaluated: dict[str, float] = {}  # per instance: the evaluation time the API stamped on its samples
        for result in self._query(PROMQL_SELECTOR):
            metric = result["metric"]
            instance = metric.get("instance", "unknown")
            families = by_instance.get(instance)
            if families is None:
                families = by_instance[instance] = {}
                evaluated[instance] = float(result["value"][0])
            name = metric["__name__"]
            value = float(result["value"][1])
            if counter(name):
                if instance not in start:
                    continue  # the target was not scraped at the window's start: a baseline only
                # A name with no start value on the instance needs no key to know it has none.
                then = start[instance].get(_promql_key(metric)) if name in started[instance] else None
                value = increase(value, then)
                if value <= 0:
                    continue
            family = families.get(name)
            if family is None:
                family = families[name] = Metric(name, "read through the PromQL API", "untyped")
            labels = {one(k, k): one(v, v) for k, v in metric.items() if k not in _PROMQL_TARGET_LABELS}
            family.samples.append(Sample(family.name, labels, value))
        # Prometheus's own verdict on each target's last scrape: 0 where it failed (a plain selector, which
        # every Prometheus-compatible API answers, filtered here).
        failing = {
            str(r["metric"]["instance"])
            for r in self._query("up")
            if "instance" in r["metric"] and float(r["value"][1]) == 0
        }
        instances = set(by_instance) | set(start) | failing
        hosts: dict[str, int] = {}
        for instance in instances:
            hosts[node_name(instance)] = hosts.get(node_name(instance), 0) + 1

        def node(instance: str) -> str:
            host = node_name(instance)
            return host if hosts[host] == 1 else instance

        # A target whose scrape fails (up 0), or with series at the window's start and none now (an API
        # without Prometheus's up series), stopped answering.
        answered = set(by_instance)
        self.down = sorted(node(instance) for instance in (set(start) - answered) | (failing - answered))
        return {
            node(instance): NodeSnapshot(families=list(families.values()), time=evaluated[instance])
            for instance, families in by_instance.items()
            if families  # an instance none of whose counters rose and with no gauges shows nothing
        }


#: How much of an answer's start is read for its envelope (``status``, ``errorType``, ``error``), which
#: Prometheus-compatible APIs write before the result; a short (error) answer is read whole.
_HEAD_BYTES = 64 * 1024
#: The chunk an answer is copied to its temporary file in.
_COPY_BYTES = 1024 * 1024


def _envelope(head: bytes) -> dict[str, Any] | None:
    """The top-level strings (``status``, ``errorType``, ``error``) that an answer's first bytes hold, read
    up to the result or to where the bytes end; None where the bytes do not start as JSON."""
    found: dict[str, Any] = {}
    events = 0
    try:
        for prefix, event, value in ijson.parse(head):
            events += 1
            if event in ("string", "null") and prefix in ("status", "errorType", "error"):
                found[prefix] = value
    except ijson.JSONError:
        if events == 0:
            return None
    return found


#: Labels the PromQL API adds to a series that are not the exporter's: the target's and the name.
_PROMQL_TARGET_LABELS = frozenset({"__name__", "instance", "job"})


def _promql_key(metric: dict[str, str]) -> str | frozenset[tuple[str, str]]:
    """A series' identity as the PromQL API names it: all its labels, ``__name__`` and the target's too.

    One string, the label pairs in name order joined by NUL, so that a window's start (a value per
    counter of the cluster: millions at 2,048 nodes) costs one short string per counter rather than a set
    of pairs of strings (a sixth of the memory). A series whose labels hold a NUL (the count of NULs
    tells) would make the string ambiguous and is keyed by its set of pairs instead.
    """
    joined = "\x00".join([f"{name}\x00{metric[name]}" for name in sorted(metric)])
    if joined.count("\x00") != 2 * len(metric) - 1:
        return frozenset(metric.items())
    return joined


class LiveCollector:
    """Runs cycles: gather a window from the sources, investigate it, record incidents.

    Args:
        sources: where evidence comes from.
        store: the incident store reports go to.
        window_dir: where to write each cycle's window as a bundle folder for ``fleetscope
            investigate`` (replaced on every cycle; it must not exist yet or be a window this collector
            wrote, holding :data:`WINDOW_MARKER`), or None to write nothing. The cycle itself hands
            samples and log lines straight to the engine
            (:func:`~fleetscope.collectors.investigate.investigate_window`) either way.
        kernel_history: at most this many kernel-log lines per node in a window.
        registry: where the collector's own metrics are registered.
        on_incident: called with each recorded incident (e.g. to link it into the lineage graph); an
            exception it raises is logged and counted, never fatal to the cycle.
        resolve_after: an open incident whose fault no window has shown for this long is resolved.
        alerts: sends a notification when an incident opens, reopens or resolves; None for none.
        window: how long the sources' windows are (for rates over them), as given to the sources.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        store: IncidentStore,
        window_dir: Path | None = None,
        kernel_history: int = 5000,
        registry: CollectorRegistry | None = None,
        on_incident: Callable[[Incident], object] | None = None,
        resolve_after: timedelta = timedelta(minutes=10),
        alerts: WebhookSender | None = None,
        window: timedelta = timedelta(minutes=5),
    ) -> None:
        self.sources = list(sources)
        self.history = WindowHistory(window)
        self.store = store
        self.on_incident = on_incident
        self.resolve_after = resolve_after
        self.alerts = alerts
        self.window_dir = Path(window_dir) if window_dir is not None else None
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
            "fleetscope_collector_nodes", "Nodes that answered in the latest window.", registry=self.registry
        )
        self._open = Gauge(
            "fleetscope_collector_incidents_open",
            "Incidents open after the latest cycle (reported, and not yet quiet for the resolve time).",
            registry=self.registry,
        )
        self._open_info = Gauge(
            "fleetscope_collector_open_incident_info",
            "One series, value 1, per incident open after the latest cycle (the newest 100); "
            "gpu is empty where the incident names no GPU. Grafana draws these as annotations.",
            ["fingerprint", "layer", "node", "gpu"],
            registry=self.registry,
        )
        self._open_labels: set[tuple[str, str, str, str]] = set()
        self._changes = Counter(
            "fleetscope_collector_incident_changes_total",
            "Incident lifecycle changes: opened, updated, reopened, resolved.",
            ["change"],
            registry=self.registry,
        )

    def _gather(self) -> tuple[dict[str, NodeSnapshot], list[str], set[str]]:
        """Read every source; return the nodes, one line per thing that could not be read, and the nodes
        that did not answer."""
        nodes: dict[str, NodeSnapshot] = {}
        errors = []
        skipped = []
        down: set[str] = set()
        for source in self.sources:
            try:
                for node, snapshot in source.fetch().items():
                    merged = nodes.setdefault(node, NodeSnapshot())
                    merged.families += snapshot.families
                    merged.kernel_lines += snapshot.kernel_lines
                    merged.time = snapshot.time if merged.time is None else merged.time
                skipped += [f"not read this cycle: {problem}" for problem in source.skipped]
                down.update(source.down)
            except SourceError as exc:
                down.update(source.down)
                self._errors.inc()
                errors.append(f"{type(source).__name__}: {exc}")
                log.warning("source %s failed this cycle: %s", type(source).__name__, exc)
        if errors and len(errors) == len(self.sources):
            # Investigating an empty window would report a healthy cluster that nobody looked at.
            raise CollectionError("no source could be read: " + "; ".join(errors))
        return nodes, [f"not read this cycle: {error}" for error in errors] + skipped, down - set(nodes)

    def _kernel_lines(self, snapshot: NodeSnapshot) -> list[str]:
        """The node's kernel lines in the window: each once (an exporter's /events is a ring buffer that
        repeats lines), the latest ``kernel_history`` of them."""
        return list(dict.fromkeys(snapshot.kernel_lines))[-self._kernel_history :]

    def _write_window(self, window_dir: Path, nodes: dict[str, NodeSnapshot]) -> None:
        staging = window_dir.with_name(window_dir.name + ".new")
        for folder in (window_dir, staging):
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
            if snapshot.families:
                (folder / "metrics.prom").write_text(exposition(snapshot.families))
            lines = self._kernel_lines(snapshot)
            if lines:
                (folder / "kernel.log").write_text("\n".join(lines) + "\n")
        # Swap in the new window whole, so a reader never sees half of one.
        shutil.rmtree(window_dir, ignore_errors=True)
        staging.rename(window_dir)

    def run_once(self) -> dict[str, Any]:
        """One cycle.

        Returns:
            The investigation report of the window (docs/design.md JSON contract).

        Raises:
            CollectionError: no source could be read, or the window folder is not the collector's.
        """
        started = time.perf_counter()
        with gc_paused():
            nodes, unread, down = self._gather()
            answered = len(nodes)
            derived = self.history.observe(
                {node: snapshot.families for node, snapshot in nodes.items()},
                down,
                {node: snapshot.time for node, snapshot in nodes.items() if snapshot.time is not None},
            )
            for node, families in derived.items():
                nodes.setdefault(node, NodeSnapshot()).families += families
            if self.window_dir is not None:
                self._write_window(self.window_dir, nodes)
            report = investigate_window(
                {node: snapshot.families for node, snapshot in nodes.items()},
                {node: self._kernel_lines(snapshot) for node, snapshot in nodes.items()},
                self.history.topology,
            ).to_dict()
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
        self._nodes.set(answered)
        self._incident.set(1 if report.get("incident") else 0)
        still_open = self.store.count("open")
        self._open.set(still_open)
        self._export_open(self.store.recent(limit=100, state="open"))
        self._duration.observe(time.perf_counter() - started)
        log.info("cycle: nodes read %d, not answering %d, incidents open %d", answered, len(down), still_open)
        return report

    def _export_open(self, incidents: list[Incident]) -> None:
        """Set one ``fleetscope_collector_open_incident_info`` series per open incident; drop the others
        (stale ones only, so a scrape never sees an incident that stayed open missing)."""
        now = {
            (i.fingerprint, i.layer or "", i.node or "", "" if i.gpu is None else str(i.gpu))
            for i in incidents
        }
        for labels in self._open_labels - now:
            self._open_info.remove(*labels)
        for labels in now:
            self._open_info.labels(*labels).set(1)
        self._open_labels = now

    def run_forever(self, interval: float) -> None:
        """Run a cycle every ``interval`` seconds until interrupted; a failed cycle is logged and skipped."""
        while True:
            started = time.monotonic()
            try:
                self.run_once()
            except CollectionError as exc:
                log.error("cycle skipped: %s", exc)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
