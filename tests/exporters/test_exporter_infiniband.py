"""The infiniband collector on real sysfs trees: unit conversion, device filter, missing hardware."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fleetscope.exporters.infiniband import InfinibandCollector
from fleetscope.exporters.scrape import SourceUnavailable
from tests.exporters.support import FIXTURES, samples

TREES = FIXTURES / "infiniband"


def scrape(collector: InfinibandCollector) -> dict:
    registry = CollectorRegistry()
    registry.register(collector)
    return samples(generate_latest(registry).decode())


def test_data_counters_are_words_turned_into_bytes_preferring_64_bit() -> None:
    result = scrape(InfinibandCollector(TREES / "node_exporter", device_include="mlx4_0"))
    port = (("device", "mlx4_0"), ("port", "1"))
    words = int(
        (TREES / "node_exporter/class/infiniband/mlx4_0/ports/1/counters_ext/port_rcv_data_64").read_text()
    )
    assert result[("fleetscope_infiniband_port_receive_bytes_total", port)] == words * 4
    # counters/port_xmit_wait is saturated at 2^32-1 there; nothing rescales it
    assert result[("fleetscope_infiniband_port_transmit_wait_total", port)] == 2**32 - 1
    assert {dict(k)["device"] for _, k in result} == {"mlx4_0"}


def test_every_efa_hw_counter_is_exported_and_lifespan_is_not() -> None:
    tree = TREES / "efa_awsdocs"
    files = sorted(p.name for p in tree.glob("class/infiniband/rdmap0s31/ports/1/hw_counters/*"))
    result = scrape(InfinibandCollector(tree))
    assert len(result) == len(files) - 1  # lifespan is the driver's cache time, not a counter
    assert ("fleetscope_efa_retransmitted_packets_total", (("device", "rdmap0s31"), ("port", "1"))) in result
    assert (
        "fleetscope_efa_unresponsive_remote_events_total",
        (("device", "rdmap0s31"), ("port", "1")),
    ) in result


def test_device_include_filters_whole_names() -> None:
    collector = InfinibandCollector(TREES / "procfs", device_include="mlx[45]_0")
    assert [d for d, _, _ in collector.ports()] == ["mlx4_0", "mlx4_0", "mlx5_0"]
    assert InfinibandCollector(TREES / "procfs", device_include="mlx").ports() == []
    with pytest.raises(ValueError, match="not a regex"):
        InfinibandCollector(TREES / "procfs", device_include="mlx[")


def test_a_node_without_infiniband_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="no InfiniBand"):
        list(InfinibandCollector(tmp_path).collect())
