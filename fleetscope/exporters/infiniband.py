"""InfiniBand, RoCE and EFA collector: port state and counters from ``/sys/class/infiniband``.

Files read, per device ``D`` and port ``P`` (Linux ``Documentation/ABI/stable/sysfs-class-infiniband``):

* ``{sysfs}/class/infiniband/D/ports/P/{state,phys_state,rate,link_layer}``: ``4: ACTIVE``,
  ``5: LinkUp``, ``100 Gb/sec (4X EDR)``, ``InfiniBand`` / ``Ethernet`` (RoCE).
* ``.../ports/P/counters/*``: the InfiniBand port counters of the Performance Management Agent (IBA
  vol. 1, 16.1.3.5). ``port_rcv_data`` and ``port_xmit_data`` count **4-byte words** (octets divided by
  4); they are exported in bytes. ``counters_ext/*_64`` (mlx4) holds 64-bit versions of the 32-bit
  ones, which saturate, and is preferred when present.
* ``.../ports/P/hw_counters/*``: driver counters. Those of the AWS EFA driver (``efa_hw_stats`` in the
  kernel's ``drivers/infiniband/hw/efa/efa_verbs.c``) get named ``fleetscope_efa_*`` metrics in base
  units; every other one (mlx5's RoCE congestion and error counters, EFA's admin-queue counters, counters
  a newer driver adds) is exported as ``fleetscope_infiniband_port_hw_stat_total{stat=FILE}``, so no
  counter a device lists is lost. ``lifespan`` is not a counter (it is how many milliseconds the driver
  caches the others) and is left out.

A node without ``/sys/class/infiniband`` reports ``fleetscope_scrape_collector_success 0`` and nothing
else. ``device_include`` (a regular expression matched against the whole device name) limits the
devices read.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from prometheus_client.core import Metric

from fleetscope.exporters.metrics import MetricSpec, add
from fleetscope.exporters.registry import BuildContext, Setting, register
from fleetscope.exporters.scrape import SourceUnavailable

log = logging.getLogger(__name__)

_PORT = ("device", "port")


def _counter(name: str, help: str, source: str, scale: float = 1.0) -> MetricSpec:
    return MetricSpec(name, "counter", help, source, scale, _PORT)


# (spec, candidate files under ports/P/, first present wins)
IB_COUNTERS: tuple[tuple[MetricSpec, tuple[str, ...]], ...] = (
    (
        _counter(
            "fleetscope_infiniband_port_receive_bytes_total",
            "Data received, from ports/P/counters_ext/port_rcv_data_64 or counters/port_rcv_data "
            "(4-byte words).",
            "counters/port_rcv_data",
            4.0,
        ),
        ("counters_ext/port_rcv_data_64", "counters/port_rcv_data"),
    ),
    (
        _counter(
            "fleetscope_infiniband_port_transmit_bytes_total",
            "Data transmitted, from ports/P/counters_ext/port_xmit_data_64 or counters/port_xmit_data "
            "(4-byte words).",
            "counters/port_xmit_data",
            4.0,
        ),
        ("counters_ext/port_xmit_data_64", "counters/port_xmit_data"),
    ),
    (
        _counter(
            "fleetscope_infiniband_port_receive_packets_total",
            "Packets received, from ports/P/counters_ext/port_rcv_packets_64 or counters/port_rcv_packets.",
            "counters/port_rcv_packets",
        ),
        ("counters_ext/port_rcv_packets_64", "counters/port_rcv_packets"),
    ),
    (
        _counter(
            "fleetscope_infiniband_port_transmit_packets_total",
            "Packets transmitted, from ports/P/counters_ext/port_xmit_packets_64 or "
            "counters/port_xmit_packets.",
            "counters/port_xmit_packets",
        ),
        ("counters_ext/port_xmit_packets_64", "counters/port_xmit_packets"),
    ),
    (
        _counter(
            "fleetscope_infiniband_link_downed_total",
            "Times the link went down after failing error recovery, from ports/P/counters/link_downed.",
            "counters/link_downed",
        ),
        ("counters/link_downed",),
    ),
    (
        _counter(
            "fleetscope_infiniband_link_error_recovery_total",
            "Successful link error recoveries, from ports/P/counters/link_error_recovery.",
            "counters/link_error_recovery",
        ),
        ("counters/link_error_recovery",),
    ),
    (
        _counter(
            "fleetscope_infiniband_symbol_errors_total",
            "Minor link errors (symbol errors) on the physical lanes, from ports/P/counters/symbol_error.",
            "counters/symbol_error",
        ),
        ("counters/symbol_error",),
    ),
    (
        _counter(
            "fleetscope_infiniband_port_receive_errors_total",
            "Received packets with errors, from ports/P/counters/port_rcv_errors.",
            "counters/port_rcv_errors",
        ),
        ("counters/port_rcv_errors",),
    ),
    (
        _counter(
            "fleetscope_infiniband_port_receive_remote_physical_errors_total",
            "Received packets marked with the EBP delimiter, from "
            "ports/P/counters/port_rcv_remote_physical_errors.",
            "counters/port_rcv_remote_physical_errors",
        ),
        ("counters/port_rcv_remote_physical_errors",),
    ),
    (
        _counter(
            "fleetscope_infiniband_port_transmit_discards_total",
            "Outbound packets discarded (port down or congested), from ports/P/counters/port_xmit_discards.",
            "counters/port_xmit_discards",
        ),
        ("counters/port_xmit_discards",),
    ),
    (
        _counter(
            "fleetscope_infiniband_port_transmit_wait_total",
            "Ticks during which the port had data to send but no flow-control credits, from "
            "ports/P/counters/port_xmit_wait.",
            "counters/port_xmit_wait",
        ),
        ("counters/port_xmit_wait",),
    ),
    (
        _counter(
            "fleetscope_infiniband_local_link_integrity_errors_total",
            "Times the local physical errors exceeded the threshold, from "
            "ports/P/counters/local_link_integrity_errors.",
            "counters/local_link_integrity_errors",
        ),
        ("counters/local_link_integrity_errors",),
    ),
    (
        _counter(
            "fleetscope_infiniband_excessive_buffer_overrun_errors_total",
            "Consecutive flow-control update periods with buffer overrun, from "
            "ports/P/counters/excessive_buffer_overrun_errors.",
            "counters/excessive_buffer_overrun_errors",
        ),
        ("counters/excessive_buffer_overrun_errors",),
    ),
)
_IB_FILES = {path for _, paths in IB_COUNTERS for path in paths}

# EFA hardware counters (efa_verbs.c efa_port_stats_descs / efa_rdma_*), file -> (name, help).
EFA_COUNTERS: dict[str, tuple[str, str]] = {
    "tx_bytes": ("fleetscope_efa_transmit_bytes_total", "Bytes transmitted"),
    "tx_pkts": ("fleetscope_efa_transmit_packets_total", "Packets transmitted"),
    "rx_bytes": ("fleetscope_efa_receive_bytes_total", "Bytes received"),
    "rx_pkts": ("fleetscope_efa_receive_packets_total", "Packets received"),
    "rx_drops": ("fleetscope_efa_receive_drops_total", "Received packets dropped"),
    "send_bytes": ("fleetscope_efa_send_bytes_total", "Bytes of send operations"),
    "send_wrs": ("fleetscope_efa_send_work_requests_total", "Send work requests"),
    "recv_bytes": ("fleetscope_efa_recv_bytes_total", "Bytes of receive operations"),
    "recv_wrs": ("fleetscope_efa_recv_work_requests_total", "Receive work requests"),
    "rdma_read_bytes": ("fleetscope_efa_rdma_read_bytes_total", "Bytes read by RDMA reads"),
    "rdma_read_wrs": ("fleetscope_efa_rdma_read_work_requests_total", "RDMA read work requests"),
    "rdma_read_wr_err": ("fleetscope_efa_rdma_read_work_request_errors_total", "Failed RDMA read requests"),
    "rdma_read_resp_bytes": (
        "fleetscope_efa_rdma_read_response_bytes_total",
        "Bytes sent in answer to remote RDMA reads",
    ),
    "rdma_write_bytes": ("fleetscope_efa_rdma_write_bytes_total", "Bytes written by RDMA writes"),
    "rdma_write_wrs": ("fleetscope_efa_rdma_write_work_requests_total", "RDMA write work requests"),
    "rdma_write_wr_err": (
        "fleetscope_efa_rdma_write_work_request_errors_total",
        "Failed RDMA write requests",
    ),
    "rdma_write_recv_bytes": (
        "fleetscope_efa_rdma_write_received_bytes_total",
        "Bytes received from remote RDMA writes",
    ),
    "retrans_bytes": ("fleetscope_efa_retransmitted_bytes_total", "Bytes retransmitted"),
    "retrans_pkts": ("fleetscope_efa_retransmitted_packets_total", "Packets retransmitted"),
    "retrans_timeout_events": (
        "fleetscope_efa_retransmit_timeout_events_total",
        "Retransmissions that timed out",
    ),
    "impaired_remote_conn_events": (
        "fleetscope_efa_impaired_remote_connection_events_total",
        "Connections to a remote peer found impaired",
    ),
    "unresponsive_remote_events": (
        "fleetscope_efa_unresponsive_remote_events_total",
        "Remote peers that stopped responding",
    ),
}
EFA_METRICS = {
    file: _counter(name, f"{what}, from ports/P/hw_counters/{file} (EFA driver).", f"hw_counters/{file}")
    for file, (name, what) in EFA_COUNTERS.items()
}
HW_STAT = MetricSpec(
    "fleetscope_infiniband_port_hw_stat_total",
    "counter",
    "A counter file of ports/P/hw_counters/ or ports/P/counters/ that has no named metric here "
    "(label stat: the file name), as the driver counts it.",
    "hw_counters/*",
    labels=(*_PORT, "stat"),
)
STATE = MetricSpec(
    "fleetscope_infiniband_port_state",
    "gauge",
    "Logical port state number from ports/P/state (1 down, 2 init, 3 armed, 4 active, 5 active_defer).",
    "ports/P/state",
    labels=_PORT,
)
PHYSICAL_STATE = MetricSpec(
    "fleetscope_infiniband_port_physical_state",
    "gauge",
    "Physical port state number from ports/P/phys_state (2 polling, 3 disabled, 5 link up, 6 link error "
    "recovery).",
    "ports/P/phys_state",
    labels=_PORT,
)
RATE = MetricSpec(
    "fleetscope_infiniband_port_rate_bytes_per_second",
    "gauge",
    "Signalling rate of the port from ports/P/rate (Gb/sec), in bytes per second.",
    "ports/P/rate",
    scale=1e9 / 8,
    labels=_PORT,
)
INFO = MetricSpec(
    "fleetscope_infiniband_port_info",
    "gauge",
    "Port identity, value 1: link layer from ports/P/link_layer (InfiniBand, Ethernet for RoCE).",
    "ports/P/link_layer",
    labels=(*_PORT, "link_layer"),
)
METRICS = (
    INFO,
    STATE,
    PHYSICAL_STATE,
    RATE,
    *(spec for spec, _ in IB_COUNTERS),
    *EFA_METRICS.values(),
    HW_STAT,
)

# Not counters: lifespan is the driver's cache time for hw_counters, in milliseconds.
_NOT_COUNTERS = frozenset({"lifespan"})


def _read(path: str) -> bytes | None:
    # One unbuffered read per file: sysfs attributes are small, and a scrape reads hundreds of them.
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read(4096).strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _number(path: str) -> int | None:
    """A counter file's value; ``None`` for an absent file or text such as ``N/A (no PMA)``."""
    text = _read(path)
    return int(text) if text is not None and text.isdigit() else None


class InfinibandCollector:
    """Prometheus collector for InfiniBand, RoCE and EFA ports.

    Args:
        sysfs_root: Mount point of sysfs (``/sys``, or a fixture tree).
        device_include: Regular expression; only devices whose whole name matches are read
            (empty: every device).

    Raises:
        ValueError: ``device_include`` is not a valid regular expression.
    """

    name = "infiniband"

    def __init__(self, sysfs_root: str | Path = "/sys", device_include: str = "") -> None:
        self._root = Path(sysfs_root) / "class" / "infiniband"
        try:
            self._include = re.compile(device_include) if device_include else None
        except re.error as exc:
            raise ValueError(f"infiniband device-include {device_include!r} is not a regex: {exc}") from None

    def ports(self) -> list[tuple[str, str, Path]]:
        """The (device, port, port directory) triples read, sorted.

        Raises:
            SourceUnavailable: No ``class/infiniband`` directory.
        """
        try:
            devices = sorted(os.listdir(self._root))
        except OSError as exc:
            raise SourceUnavailable(f"no InfiniBand or EFA devices: {exc}") from None
        found: list[tuple[str, str, Path]] = []
        for device in devices:
            if self._include is not None and not self._include.fullmatch(device):
                continue
            ports_dir = self._root / device / "ports"
            try:
                ports = sorted(os.listdir(ports_dir), key=lambda p: (len(p), p))
            except OSError:
                continue  # a device going away between the two listings
            found.extend((device, port, ports_dir / port) for port in ports)
        return found

    def collect(self) -> Iterator[Metric]:
        """Yield the port families.

        Yields:
            The families of :data:`METRICS` that have samples.

        Raises:
            SourceUnavailable: No ``/sys/class/infiniband``.
        """
        families = {spec.name: spec.family() for spec in METRICS}
        for device, port, path in self.ports():
            labels = [device, port]
            self._state(families, labels, path)
            # One listing per counter folder, then only files that exist are opened: an EFA port has no
            # counters/ folder, and a failed open per absent candidate cost more than the reads.
            listed: dict[str, list[str]] = {}
            for group in ("counters", "counters_ext", "hw_counters"):
                try:
                    listed[group] = sorted(os.listdir(f"{path}/{group}"))
                except OSError:
                    continue
            present = {f"{group}/{file}" for group, files in listed.items() for file in files}
            for spec, candidates in IB_COUNTERS:
                for candidate in candidates:
                    value = _number(f"{path}/{candidate}") if candidate in present else None
                    if value is not None:
                        add(families[spec.name], labels, value * spec.scale)
                        break
            for group in ("counters", "hw_counters"):
                for file in listed.get(group, ()):
                    if f"{group}/{file}" in _IB_FILES or file in _NOT_COUNTERS:
                        continue
                    value = _number(f"{path}/{group}/{file}")
                    if value is None:
                        continue
                    if group == "hw_counters" and file in EFA_METRICS:
                        add(families[EFA_METRICS[file].name], labels, float(value))
                    else:
                        add(families[HW_STAT.name], [*labels, file], float(value))
        for family in families.values():
            if family.samples:
                yield family

    @staticmethod
    def _state(families: Mapping[str, Metric], labels: list[str], path: Path) -> None:
        def read(name: str) -> str | None:
            try:
                text = _read(f"{path}/{name}")
            except OSError:
                return None
            return text.decode("utf-8", "replace") if text is not None else None

        for spec, file in ((STATE, "state"), (PHYSICAL_STATE, "phys_state")):
            text = read(file)
            number = text.partition(":")[0] if text else ""
            if number.isdigit():
                add(families[spec.name], labels, float(number))
        rate = re.match(r"([0-9.]+) Gb/sec", read("rate") or "")
        if rate:
            add(families[RATE.name], labels, float(rate[1]) * RATE.scale)
        link_layer = read("link_layer")
        if link_layer:
            add(families[INFO.name], [*labels, link_layer], 1.0)


@register(
    "infiniband",
    "InfiniBand, RoCE and EFA port state and counters from /sys/class/infiniband.",
    settings=(
        Setting(
            "device_include",
            str,
            "",
            "Regular expression of device names to read (whole name, e.g. 'mlx5_[0-7]|rdmap.*').",
            metavar="REGEX",
        ),
    ),
)
def _build(ctx: BuildContext) -> InfinibandCollector:
    return InfinibandCollector(ctx.config.path_sysfs, device_include=ctx.setting("device_include"))
