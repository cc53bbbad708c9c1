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
* It is registered by being passed to :class:`ScrapeCollector` (the server does this from its config);
  tests register a bare collector in a fresh ``CollectorRegistry`` to compare exposition byte for byte.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

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


class ScrapeCollector:
    """Runs every source collector on each scrape and adds the per-collector self metrics.

    Only one family per metric name may appear in an exposition, so the duration and success series of
    all collectors are built here, once, rather than by each collector (node_exporter's design).

    Args:
        collectors: The enabled source collectors, each with a distinct ``name``.
        clock: Monotonic clock in seconds; injectable for deterministic tests.
    """

    def __init__(
        self, collectors: Sequence[SourceCollector], clock: Callable[[], float] = time.perf_counter
    ) -> None:
        names = [c.name for c in collectors]
        if len(set(names)) != len(names):
            raise ValueError(f"collector names must be distinct, got {names}")
        self._collectors = list(collectors)
        self._clock = clock
        self._unavailable: dict[str, str] = {}

    def collect(self) -> Iterator[Metric]:
        """Yield every collector's families, then the duration and success families.

        Yields:
            Metric families; never raises for a collector's failure.
        """
        duration, success = DURATION.family(), SUCCESS.family()
        for collector in self._collectors:
            start = self._clock()
            families: list[Metric] = []
            ok = True
            try:
                families.extend(collector.collect())
            except SourceUnavailable as exc:
                ok = False
                self._note_unavailable(collector.name, str(exc))
            except Exception:
                ok = False
                log.exception(
                    "collector %s failed; its other series from this scrape are kept", collector.name
                )
            else:
                self._note_available(collector.name)
            add(duration, [collector.name], self._clock() - start)
            add(success, [collector.name], 1.0 if ok else 0.0)
            yield from families
        yield duration
        yield success

    def _note_unavailable(self, name: str, reason: str) -> None:
        # One log line per change of state, not one per scrape: a node without a GPU is scraped forever.
        if self._unavailable.get(name) != reason:
            log.warning("collector %s: source unavailable: %s", name, reason)
            self._unavailable[name] = reason

    def _note_available(self, name: str) -> None:
        if self._unavailable.pop(name, None) is not None:
            log.info("collector %s: source available again", name)
