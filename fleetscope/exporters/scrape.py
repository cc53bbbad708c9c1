"""The collector contract, and the wrapper that times every collector on each scrape.

Plug-in contract for a source collector (``exporters/host.py``, ``gpu.py``, ``xid.py``, ...):

* It is a Prometheus custom collector: a class with a ``name`` attribute (the value of the
  ``collector`` label, e.g. ``"gpu"``) and a ``collect()`` generator that yields *fresh* metric families
  on every call (prometheus/client_python's custom-collector idiom). It keeps no families between
  scrapes; counters it owns (Xid counts) are plain numbers turned into families on each call.
* Its sources are injected through its constructor (``procfs_root``, ``sysfs_root``, an NVML module-like
  object, a kernel-log path), so tests pass fixture trees and fakes instead of monkeypatching.
* Missing hardware or an unreadable source is not a failure of the exporter: the collector raises
  :class:`SourceUnavailable` (after yielding whatever it still could), which :class:`ScrapeCollector`
  turns into ``fleetscope_scrape_collector_success{collector=NAME} 0``. Any other exception is a bug: it
  is logged with its traceback, the collector's families from that scrape are kept up to the failure,
  and the scrape of the other collectors goes on. Nothing a collector raises reaches the HTTP client.
* It registers itself with :func:`fleetscope.exporters.registry.register` (see that module); the server
  builds the enabled ones and hands them to :class:`ScrapeCollector`, which runs each in its own thread
  under a deadline. Tests register a bare collector in a fresh ``CollectorRegistry`` to compare
  exposition byte for byte.
* A collector whose ``collect()`` only copies what its own background thread gathered (``xid``,
  ``training``, ``netprobe``) sets the class attribute ``from_memory = True``: it runs on the scraping
  thread, with no hand-off to a worker thread (a hand-off costs more than such a collect). It must then
  never wait on anything but a lock held for a copy, and be safe to call from concurrent scrapes.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client.core import Metric

from fleetscope.exporters.metrics import MetricSpec, add

log = logging.getLogger(__name__)


class SourceUnavailable(Exception):
    """A collector's source (NVML, a sysfs tree, the kernel log) cannot be read right now."""


class SourceCollector(Protocol):
    """What :class:`ScrapeCollector` needs from a source collector (see the module docstring)."""

    name: str

    def collect(self) -> Iterable[Metric]:
        """Yield fresh metric families; may raise :class:`SourceUnavailable`."""
        ...


def from_memory(collector: SourceCollector) -> bool:
    """Whether ``collector`` answers from memory and so runs on the scraping thread (module docstring)."""
    return bool(getattr(collector, "from_memory", False))


SCRAPE_METRICS = (
    MetricSpec(
        "fleetscope_scrape_collector_duration_seconds",
        "gauge",
        "Seconds the collector took in this scrape (monotonic clock around its collect()).",
        "time.perf_counter",
        labels=("collector",),
    ),
    MetricSpec(
        "fleetscope_scrape_collector_success",
        "gauge",
        "1 if the collector read its source in this scrape, 0 if the source was unavailable or it failed.",
        "collect() outcome",
        labels=("collector",),
    ),
)
DURATION, SUCCESS = SCRAPE_METRICS


class Worker:
    """One daemon thread that runs calls in order; a hung call blocks this worker only.

    Args:
        name: Thread name (shows in stack dumps).
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        # Daemon: a call stuck in a driver or a dead NFS mount must not keep the exporter from exiting.
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Queue ``fn``; returns the future of its result."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, fn))
        return future

    def stop(self) -> None:
        """Let the thread end after the calls queued so far."""
        self._queue.put(None)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)


@dataclass
class _Outcome:
    families: list[Metric]
    ok: bool
    seconds: float


class _Runner:
    """Runs one collector in its own worker thread under a deadline, sharing a run between scrapes.

    Concurrent scrapes wait on the same run (a collector is never run twice at once, so it needs no
    locking of its own). A run past the deadline leaves the scrape with the last good families, marked
    unsuccessful; later scrapes do not wait for the stuck run again but serve those values until it
    returns, after which the next scrape runs the collector afresh. A collector that answers from memory
    (:func:`from_memory`) has no worker: it runs on the scraping thread when the scrape reaches it.
    """

    def __init__(self, collector: SourceCollector, timeout: float, clock: Callable[[], float]) -> None:
        self.collector = collector
        self._timeout = timeout
        self._clock = clock
        self._worker = None if from_memory(collector) else Worker(f"collector-{collector.name}")
        self._lock = threading.Lock()
        self._running: concurrent.futures.Future[_Outcome] | None = None
        self._stuck = False
        self._last: list[Metric] = []
        self._unavailable: str | None = None

    def start(self) -> concurrent.futures.Future[_Outcome] | None:
        """Start a run, or join the one in progress; returns its future (``None``: run it in finish)."""
        if self._worker is None:
            return None
        with self._lock:
            if self._running is None:
                self._running = self._worker.submit(self._drain)
            return self._running

    def finish(self, running: concurrent.futures.Future[_Outcome] | None, deadline: float) -> _Outcome:
        """Wait for the run until ``deadline`` (on the clock); stale values if it does not finish."""
        if running is None:
            return self._drain()
        with self._lock:
            stuck = self._stuck
        try:
            outcome = running.result(0 if stuck else max(0.0, deadline - self._clock()))
        except concurrent.futures.TimeoutError:
            with self._lock:
                if not self._stuck:
                    log.warning(
                        "collector %s did not finish within %gs; serving its last values as stale",
                        self.collector.name,
                        self._timeout,
                    )
                self._stuck = True
            return _Outcome(self._last, False, self._timeout)
        with self._lock:
            if self._running is running:
                self._running = None
                if self._stuck:
                    log.info("collector %s finished again", self.collector.name)
                self._stuck = False
                if outcome.ok:
                    self._last = outcome.families
        return outcome

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()

    def _drain(self) -> _Outcome:
        families: list[Metric] = []
        name = self.collector.name
        start = self._clock()
        try:
            families.extend(self.collector.collect())
        except SourceUnavailable as exc:
            # One log line per change of state, not one per scrape: a node without a GPU is scraped forever.
            if self._unavailable != str(exc):
                log.warning("collector %s: source unavailable: %s", name, exc)
                self._unavailable = str(exc)
            return _Outcome(families, False, self._clock() - start)
        except Exception:
            log.exception("collector %s failed; its other series from this scrape are kept", name)
            return _Outcome(families, False, self._clock() - start)
        if self._unavailable is not None:
            log.info("collector %s: source available again", name)
            self._unavailable = None
        return _Outcome(families, True, self._clock() - start)


class ScrapeCollector:
    """Runs every source collector on each scrape and adds the per-collector self metrics.

    Only one family per metric name may appear in an exposition, so the duration and success series of
    all collectors are built here, once, rather than by each collector (node_exporter's design). Each
    collector runs in its own thread, all at once, under ``timeout``: a hung read cannot hang the scrape
    (see :class:`_Runner`). A collector that reads another's results (``jobs`` reads the GPU process
    lists) sees them as of that collector's last finished run.

    Args:
        collectors: The enabled source collectors, each with a distinct ``name``.
        clock: Monotonic clock in seconds; injectable for deterministic tests.
        timeout: Seconds a scrape waits for the collectors.
    """

    def __init__(
        self,
        collectors: Sequence[SourceCollector],
        clock: Callable[[], float] = time.perf_counter,
        timeout: float = 5.0,
    ) -> None:
        names = [c.name for c in collectors]
        if len(set(names)) != len(names):
            raise ValueError(f"collector names must be distinct, got {names}")
        self._runners = [_Runner(c, timeout, clock) for c in collectors]
        self._clock = clock
        self._timeout = timeout

    def collect(self) -> Iterator[Metric]:
        """Yield every collector's families, then the duration and success families.

        Yields:
            Metric families; never raises for a collector's failure and never waits past the deadline.
        """
        duration, success = DURATION.family(), SUCCESS.family()
        # All collectors run at once, each in its own thread, under one deadline for the scrape.
        deadline = self._clock() + self._timeout
        running = [(runner, runner.start()) for runner in self._runners]
        for runner, future in running:
            outcome = runner.finish(future, deadline)
            add(duration, [runner.collector.name], outcome.seconds)
            add(success, [runner.collector.name], 1.0 if outcome.ok else 0.0)
            yield from outcome.families
        yield duration
        yield success

    def close(self) -> None:
        """Stop the collectors' worker threads (a stuck one ends when its call returns)."""
        for runner in self._runners:
            runner.stop()
