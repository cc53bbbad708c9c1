"""The simulated NVLink peer-to-peer probe: a histogram per ordered GPU pair, shaped as the exporter's,
counting a round of five round trips every 30 s, which stops when a GPU falls off the bus."""

from __future__ import annotations

from prometheus_client.core import Metric

from fleetscope.exporters import nvlink
from fleetscope.simulate import SimulatedCluster, parse_fault

START = 1_800_000_000.0


def _probe(cluster: SimulatedCluster, node: int, t: float) -> tuple[Metric, float]:
    families = {family.name: family for family in cluster.families(node, t)}
    (up,) = families[nvlink.PROBE_UP.name].samples
    return families[nvlink.PROBE_LATENCY.name], up.value


def _counts(latency: Metric) -> dict[tuple[str, str], float]:
    return {
        (s.labels["gpu"], s.labels["peer"]): s.value
        for s in latency.samples
        if s.name == "fleetscope_nvlink_probe_latency_seconds_count"
    }


def test_every_pair_has_a_histogram_of_round_trips_of_about_16_us() -> None:
    cluster = SimulatedCluster(1, start=START, clock=lambda: START)
    latency, up = _probe(cluster, 0, 0.0)
    assert up == 1.0
    assert latency.type == "histogram" and latency.documentation == nvlink.PROBE_LATENCY.help
    counts = _counts(latency)
    assert len(counts) == 8 * 7 and all(gpu != peer for gpu, peer in counts)
    for (gpu, peer), count in counts.items():
        buckets = [
            (s.labels["le"], s.value)
            for s in latency.samples
            if s.name.endswith("_bucket") and (s.labels["gpu"], s.labels["peer"]) == (gpu, peer)
        ]
        assert [le for le, _ in buckets] == [*map(repr, nvlink.PROBE_BUCKETS), "+Inf"]
        values = [value for _, value in buckets]
        assert values == sorted(values) and values[-1] == count and count % 5 == 0
        by_bound = dict(buckets)
        assert by_bound["1e-05"] < 0.5 * count < by_bound["2e-05"]  # the median in 10-20 us
        assert by_bound["5e-05"] > 0.99 * count  # NVLink round trips, not PCIe ones


def test_a_round_every_30_s_until_a_gpu_falls_off_the_bus() -> None:
    cluster = SimulatedCluster(
        1, [parse_fault("xid79@sim-node-0001:2+100", 1)], start=START, clock=lambda: START
    )
    before = _counts(_probe(cluster, 0, 0.0)[0])
    later, up = _probe(cluster, 0, 90.0)
    assert up == 1.0
    assert all(_counts(later)[pair] == count + 3 * 5 for pair, count in before.items())
    lost, up = _probe(cluster, 0, 300.0)
    assert up == 0.0  # the probe's copy to the lost GPU failed: it stopped
    assert _counts(lost) == _counts(_probe(cluster, 0, 100.0)[0])  # what it counted, kept
