"""Reviewed metric lists: the one place where an exported name, its type, help and source are written.

Every collector in :mod:`fleetscope.exporters` keeps its metrics as a tuple of :class:`MetricSpec` and builds
its families through :meth:`MetricSpec.family`, so a reviewer reads one table per collector to see what is
exported, from which hardware interface, and with which unit conversion. The names are also what
``collectors/`` may import as constants.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

MetricType = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric, as reviewed data.

    Attributes:
        name: Full Prometheus name, ``fleetscope_`` prefix, base unit suffix, ``_total`` for counters.
        type: ``"gauge"``, ``"counter"`` or ``"histogram"`` (samples added with :func:`add_histogram`).
        help: Help text; names the NVML function, sysfs or procfs file the value comes from.
        source: The source field, for reviewers (``nvmlDeviceGetPowerUsage``, ``/proc/meminfo:MemTotal``).
        scale: Factor from the source's unit to the base unit (mW -> W is ``1e-3``).
        labels: Label names, all bounded per node.
    """

    name: str
    type: MetricType
    help: str
    source: str
    scale: float = 1.0
    labels: tuple[str, ...] = ()

    def family(self) -> GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily:
        """Return a fresh, empty metric family for one scrape.

        Returns:
            A gauge, counter or histogram family with this spec's name, help and labels.
        """
        if self.type == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.labels)
        if self.type == "histogram":
            return HistogramMetricFamily(self.name, self.help, labels=self.labels)
        return GaugeMetricFamily(self.name, self.help, labels=self.labels)


def add(family: Metric, labels: list[str], value: float) -> None:
    """Add one sample to a family built by :meth:`MetricSpec.family`.

    Args:
        family: The gauge or counter family.
        labels: Label values, in the order of the spec's ``labels``.
        value: The value, already in base units.
    """
    # Gauge and counter families share add_metric(labels, value); Metric itself does not declare it.
    family.add_metric(labels, value)  # type: ignore[attr-defined]


class Histogram:
    """A thread-safe cumulative histogram kept by a collector between scrapes (probe latencies, steps).

    Args:
        bounds: Upper bounds of the buckets, ascending, in the metric's base unit; ``+Inf`` is added.
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        # The buckets' "le" label values, written once: they are the same on every scrape.
        self._le = [repr(float(bound)) for bound in bounds] + ["+Inf"]
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Count one observation."""
        with self._lock:
            self._counts[bisect.bisect_left(self._bounds, value)] += 1
            self._sum += value

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self._counts)

    def add_to(self, family: Metric, labels: list[str]) -> None:
        """Add this histogram's buckets and sum to a family built by a ``"histogram"`` spec."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, buckets = 0, []
        for le, count in zip(self._le, counts, strict=True):
            cumulative += count
            buckets.append((le, float(cumulative)))
        family.add_metric(labels, buckets, total)  # type: ignore[attr-defined]
