"""The simulated query API answers the collector's queries as a real Prometheus scraping the nodes does."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from fleetscope.collectors.live import PROMQL_SELECTOR
from fleetscope.simulate import ExporterEndpoints, QueryAPI, SimulatedCluster, parse_fault
from fleetscope.simulate.promql import BadQuery, SeriesIndex, format_value, parse_selector
from tests.servers import prometheus_server, promql

#: The collector's queries (PromQLSource), and selectors of the other shapes the API takes.
QUERIES = (
    PROMQL_SELECTOR,
    "up",
    'fleetscope_gpu_up{gpu="1"}',
    'fleetscope_nvlink_up{link!~"1[0-7]", gpu!="0"}',
    '{__name__=~"fleetscope_gpu_(lost|info)", instance!="sim-node-0002"}',
)


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _query(base: str, query: str, at: float) -> dict[str, Any]:
    status, answer = _get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query, 'time': at})}")
    assert status == 200, answer
    return answer


def _series(answer: dict[str, Any]) -> dict[tuple[tuple[str, str], ...], str]:
    return {tuple(sorted(r["metric"].items())): r["value"][1] for r in answer["data"]["result"]}


@pytest.mark.integration
def test_answers_match_a_real_prometheus_scraping_the_simulated_exporters(tmp_path: Path) -> None:
    cluster = SimulatedCluster(2, [parse_fault("xid79@2:1+0", 2), parse_fault("thermal@1:6+0", 2)], links=4)
    endpoints = ExporterEndpoints(cluster).start()
    # Prometheus with static targets names each node by its address; the API is told the same.
    api = QueryAPI(cluster, instances=endpoints.targets()).start()
    try:
        with prometheus_server(tmp_path, list(endpoints.targets().values())) as prometheus:
            deadline = time.monotonic() + 60
            while len(promql(prometheus, "fleetscope_simulation_info")) < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(2.5)  # every target scraped again since, so each series has a recent sample
            at = time.time()
            for query in QUERIES:
                real, simulated = _query(prometheus, query, at), _query(api.url, query, at)
                assert real["status"] == simulated["status"] == "success"
                assert real["data"]["resultType"] == simulated["data"]["resultType"] == "vector"
                real_series, simulated_series = _series(real), _series(simulated)
                assert set(real_series) == set(simulated_series), query
                assert real_series, query
                # Values that did not move over the last scrape interval must be equal, written the same.
                earlier = _series(_query(api.url, query, at - 3))
                steady = [key for key, value in simulated_series.items() if earlier.get(key) == value]
                assert len(steady) > len(simulated_series) / 2, query
                assert {k: real_series[k] for k in steady} == {k: simulated_series[k] for k in steady}, query
                sample = simulated["data"]["result"][0]["value"]
                assert isinstance(sample[0], float) and isinstance(sample[1], str)
    finally:
        api.stop()
        endpoints.stop()


def test_a_dead_node_is_up_0_with_no_series_and_older_times_see_older_values() -> None:
    start = 1_800_000_000.0
    faults = [parse_fault("dead_node@1+60", 2)]
    cluster = SimulatedCluster(2, faults, links=1, start=start, clock=lambda: start + 90)
    api = QueryAPI(cluster).start()
    try:
        now = _series(_query(api.url, "up", start + 90))
        assert now == {
            (("__name__", "up"), ("instance", "sim-node-0001"), ("job", "fleetscope-exporter")): "0",
            (("__name__", "up"), ("instance", "sim-node-0002"), ("job", "fleetscope-exporter")): "1",
        }
        assert {dict(k)["instance"] for k in _series(_query(api.url, "fleetscope_gpu_up", start + 90))} == {
            "sim-node-0002"
        }
        # Through offset or time: the node answered 60 s ago; before the simulation nothing did.
        assert len(_series(_query(api.url, "fleetscope_gpu_up offset 1m", start + 90))) == 16
        assert _series(_query(api.url, "fleetscope_gpu_up", start - 1)) == {}
        status, answer = _get(f"{api.url}/api/v1/query?query=rate(fleetscope_gpu_energy_joules_total[5m])")
        assert (status, answer["status"], answer["errorType"]) == (400, "error", "bad_data")
        status, answer = _get(f"{api.url}/api/v1/status/buildinfo")
        assert status == 200 and "SIMULATED" in answer["data"]["revision"]
    finally:
        api.stop()


def test_steps_kept_and_shapes_reused_answer_as_a_fresh_index() -> None:
    # Faults that add series (an Xid counter), drop them (a lost GPU, a dead node) and change values
    # only, starting and ending between the steps read; the index reuses each node's shape while its
    # series stay the same and keeps the last few steps.
    start = 1_800_000_000.0
    faults = [
        parse_fault(text, 4)
        for text in ("xid79@2:1+30/20", "dead_node@3+40/10", "ecc_storm@4:2+10", "straggler@1:3+25")
    ]
    cluster = SimulatedCluster(4, faults, links=2, start=start, clock=lambda: start + 90)
    kept = SeriesIndex(cluster, "fleetscope-exporter", steps=3)
    for query in QUERIES:
        for t in (90, 5, 29, 31, 90, 45, 51, 60, 31, 90):
            fresh = SeriesIndex(cluster, "fleetscope-exporter").query(query, start + t)
            assert sorted(kept.query(query, start + t)) == sorted(fresh), (query, t)
            assert [json.loads(series) for series in fresh], (query, t)  # each one JSON object


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (0.0, "0"), (85520809984.0, "85520809984"), (0.11, "0.11"), (1e21, "1000000000000000000000"),
     (588.39, "588.39"), (float("nan"), "NaN"), (float("inf"), "+Inf"), (-0.0, "-0"), (1e-7, "0.0000001"),
     (2.5e16, "25000000000000000")],
)  # fmt: skip
def test_values_are_written_as_prometheus_writes_them(value: float, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize("query", ["{}", '{job=""}', "sum(up)", "up[5m]", 'up{job=~"("}', "up offset 5x"])
def test_queries_it_does_not_answer_are_refused(query: str) -> None:
    with pytest.raises(BadQuery):
        parse_selector(query)
