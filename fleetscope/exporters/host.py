"""Host collector: CPU time, memory, load and network counters from ``/proc`` and ``/sys``.

Files read (roots injectable, like node_exporter's ``--path.procfs`` / ``--path.sysfs``):

* ``{procfs}/stat``: the aggregate ``cpu`` line, in USER_HZ ticks (proc(5)).
* ``{procfs}/meminfo``: ``MemTotal`` and ``MemAvailable``, in kB (kibibytes, proc(5)).
* ``{procfs}/loadavg``: the 1, 5 and 15 minute load averages.
* ``{sysfs}/class/net/<device>/statistics/{rx,tx}_{bytes,errors}``: per-interface counters
  (Documentation/ABI/testing/sysfs-class-net-statistics).

psutil is not used: it reads the running system's ``/proc`` and cannot be pointed at a fixture tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import Metric

from fleetscope.exporters.metrics import MetricSpec, add
from fleetscope.exporters.registry import BuildContext, register
from fleetscope.exporters.scrape import SourceUnavailable

# /proc/stat cpu columns, in kernel order. guest and guest_nice are left out: the kernel already
# counts them inside user and nice, so exporting them as modes would double count in sum().
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")

CPU_SECONDS = MetricSpec(
    "fleetscope_host_cpu_seconds_total",
    "counter",
    "CPU time summed over all CPUs, by mode, from the cpu line of /proc/stat (USER_HZ ticks).",
    "/proc/stat:cpu",
    labels=("mode",),
)
MEMORY_TOTAL = MetricSpec(
    "fleetscope_host_memory_total_bytes",
    "gauge",
    "Usable RAM, MemTotal of /proc/meminfo (kB).",
    "/proc/meminfo:MemTotal",
    scale=1024.0,
)
MEMORY_AVAILABLE = MetricSpec(
    "fleetscope_host_memory_available_bytes",
    "gauge",
    "Memory available for new work without swapping, MemAvailable of /proc/meminfo (kB).",
    "/proc/meminfo:MemAvailable",
    scale=1024.0,
)
LOAD = tuple(
    MetricSpec(
        f"fleetscope_host_load{window}",
        "gauge",
        f"{window} minute load average, from /proc/loadavg.",
        f"/proc/loadavg field {i + 1}",
    )
    for i, window in enumerate(("1", "5", "15"))
)
NET = tuple(
    MetricSpec(
        f"fleetscope_host_network_{suffix}_total",
        "counter",
        f"{what} per interface, from /sys/class/net/<device>/statistics/{stat}.",
        f"/sys/class/net/<device>/statistics/{stat}",
        labels=("device",),
    )
    for stat, suffix, what in (
        ("rx_bytes", "receive_bytes", "Bytes received"),
        ("tx_bytes", "transmit_bytes", "Bytes transmitted"),
        ("rx_errors", "receive_errors", "Receive errors"),
        ("tx_errors", "transmit_errors", "Transmit errors"),
    )
)
METRICS = (CPU_SECONDS, MEMORY_TOTAL, MEMORY_AVAILABLE, *LOAD, *NET)


class HostCollector:
    """Prometheus collector for host CPU, memory, load and network counters.

    Args:
        procfs_root: Mount point of procfs (``/proc``, or a fixture tree).
        sysfs_root: Mount point of sysfs (``/sys``, or a fixture tree).
        ticks_per_second: USER_HZ, the unit of ``/proc/stat``; ``None`` reads ``sysconf(SC_CLK_TCK)``.
    """

    name = "host"

    def __init__(
        self,
        procfs_root: str | Path = "/proc",
        sysfs_root: str | Path = "/sys",
        ticks_per_second: int | None = None,
    ) -> None:
        self._proc = Path(procfs_root)
        self._sys = Path(sysfs_root)
        self._hz = ticks_per_second if ticks_per_second is not None else os.sysconf("SC_CLK_TCK")

    def collect(self) -> Iterator[Metric]:
        """Yield the host families; a missing or unreadable file raises after the others are yielded.

        Yields:
            One family per entry of :data:`METRICS`.

        Raises:
            SourceUnavailable: A file could not be read or parsed; the other families are still yielded.
        """
        problems: list[str] = []
        for reader in (self._cpu, self._memory, self._load, self._network):
            try:
                yield from reader()
            except (OSError, ValueError, IndexError) as exc:
                problems.append(f"{reader.__name__.lstrip('_')}: {exc}")
        if problems:
            raise SourceUnavailable("; ".join(problems))

    def _cpu(self) -> Iterator[Metric]:
        with (self._proc / "stat").open() as f:
            for line in f:
                if line.startswith("cpu "):
                    ticks = line.split()[1 : 1 + len(CPU_MODES)]
                    break
            else:
                raise ValueError(f"no aggregate cpu line in {self._proc / 'stat'}")
        family = CPU_SECONDS.family()
        for mode, value in zip(CPU_MODES, ticks, strict=False):
            add(family, [mode], int(value) / self._hz)
        yield family

    def _memory(self) -> Iterator[Metric]:
        fields: dict[str, int] = {}
        with (self._proc / "meminfo").open() as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    fields[key] = int(rest.split()[0])
        for spec, key in ((MEMORY_TOTAL, "MemTotal"), (MEMORY_AVAILABLE, "MemAvailable")):
            if key in fields:
                family = spec.family()
                add(family, [], fields[key] * spec.scale)
                yield family

    def _load(self) -> Iterator[Metric]:
        values = (self._proc / "loadavg").read_text().split()[:3]
        for spec, value in zip(LOAD, values, strict=True):
            family = spec.family()
            add(family, [], float(value))
            yield family

    def _network(self) -> Iterator[Metric]:
        net = self._sys / "class" / "net"
        devices = sorted(os.listdir(net))
        for spec in NET:
            stat = spec.source.rsplit("/", 1)[1]
            family = spec.family()
            for device in devices:
                path = net / device / "statistics" / stat
                try:
                    value = int(path.read_text())
                except FileNotFoundError:
                    # An interface can vanish between listdir and read (a container's veth going away).
                    continue
                add(family, [device], float(value))
            yield family


@register("host", "CPU time, memory, load and network counters from /proc and /sys (node_exporter has more).")
def _build(ctx: BuildContext) -> HostCollector:
    return HostCollector(ctx.config.path_procfs, ctx.config.path_sysfs)
