"""The simulated cluster serves what the exporter would: its names, types, help and labels, and each fault."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetscope.exporters import gpu, host, infiniband, nvlink, scrape, training, xid
from fleetscope.exporters.metrics import MetricSpec
from fleetscope.simulate import ExporterEndpoints, SimulatedCluster, load_scenario, parse_fault, write_file_sd

GOLDEN = Path(__file__).parents[1] / "golden" / "gpu_h100_sxm_x8.prom"
#: Every spec the exporter's collectors export, by name.
SPECS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        *(m.spec for m in gpu.METRICS),
        gpu.INFO,
        gpu.UP,
        gpu.LOST,
        gpu.TIMEOUTS,
        *nvlink.METRICS,
        *infiniband.METRICS,
        *training.METRICS,
        *xid.METRICS,
        host.CPU_SECONDS,
        host.MEMORY_TOTAL,
        host.MEMORY_AVAILABLE,
        *host.LOAD,
        *scrape.SCRAPE_METRICS,
    )
}


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def _families(
    cluster: SimulatedCluster, node: int, t: float
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` of what the node serves at ``t``."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in cluster.families(node, t):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_every_series_is_the_exporters_own_name_type_help_and_labels(tmp_path: Path) -> None:
    cluster = SimulatedCluster(2, scenario="names")
    with_endpoints = ExporterEndpoints(cluster)
    try:
        text = _scrape(f"http://{with_endpoints.targets()['sim-node-0002']}/metrics")
    finally:
        with_endpoints.stop()
    seen = set()
    for family in text_string_to_metric_families(text):
        if family.name == "fleetscope_simulation_info":
            assert [(s.labels, s.value) for s in family.samples] == [({"scenario": "names"}, 1.0)]
            continue
        name = family.name + "_total" if family.type == "counter" else family.name
        spec = SPECS[name]
        assert (family.type, family.documentation) == (spec.type, spec.help), name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(spec.labels), sample
        seen.add(name)
    # Every collector is there, as on a node with GPUs, EFA and a training job.
    for expected in (
        "fleetscope_gpu_temperature_celsius",
        "fleetscope_nvlink_crc_flit_errors_total",
        "fleetscope_efa_retransmitted_packets_total",
        "fleetscope_training_step_duration_seconds",
        "fleetscope_gpu_xid_errors_total",
        "fleetscope_host_cpu_seconds_total",
        "fleetscope_scrape_collector_success",
    ):
        assert expected in seen


def test_gpu_identity_is_the_recorded_h100_node() -> None:
    golden = {
        (s.labels["gpu"], s.labels["pci_bus_id"], s.labels["model"], s.labels["driver_version"])
        for family in text_string_to_metric_families(GOLDEN.read_text())
        if family.name == "fleetscope_gpu_info"
        for s in family.samples
    }
    served = _families(SimulatedCluster(1), 0, 10.0)["fleetscope_gpu_info"]
    assert {(d["gpu"], d["pci_bus_id"], d["model"], d["driver_version"]) for d in map(dict, served)} == golden


def test_xid79_the_gpu_falls_off_the_bus_as_the_exporter_would_show_it() -> None:
    cluster = SimulatedCluster(3, [parse_fault("xid79@2:5+30/60", 3)])
    before, during, after = (_families(cluster, 1, t) for t in (29.0, 31.0, 95.0))
    gpu5 = (("gpu", "5"),)
    assert before["fleetscope_gpu_up"][gpu5] == 1.0 and gpu5 not in before.get(
        "fleetscope_gpu_xid_errors_total", {}
    )
    # Lost to NVML: identity kept, up 0, lost 1, every other series of the GPU gone (NVLinks too).
    assert during["fleetscope_gpu_up"][gpu5] == 0.0 and during["fleetscope_gpu_lost"][gpu5] == 1.0
    assert any(dict(k)["gpu"] == "5" for k in during["fleetscope_gpu_info"])
    assert gpu5 not in during["fleetscope_gpu_temperature_celsius"]
    assert not any(dict(k)["gpu"] == "5" for k in during["fleetscope_nvlink_up"])
    assert during["fleetscope_gpu_xid_errors_total"] == {(("gpu", "5"), ("xid", "79")): 1.0}
    # The job stops stepping everywhere: a synchronous job waits for the lost rank.
    steps = (("rank", "0"),)
    counted = [_families(cluster, 0, t)["fleetscope_training_steps_total"][steps] for t in (20.0, 31.0, 50.0)]
    assert counted[0] < counted[1] == counted[2]
    # Reset after 60 s: the GPU is back; the counter keeps its count, as the exporter's does.
    assert after["fleetscope_gpu_up"][gpu5] == 1.0 and after["fleetscope_gpu_lost"][gpu5] == 0.0
    assert after["fleetscope_gpu_xid_errors_total"][(("gpu", "5"), ("xid", "79"))] == 1.0
    events = cluster.events(1, 31.0)["events"]
    xids = [e for e in events if e["kind"] == "xid"]
    assert len(xids) == 1 and xids[0]["xid"] == 79 and xids[0]["pci_bus_id"] == "0000:ab:00.0"
    assert xids[0]["time"] is not None and "fallen off the bus" in xids[0]["message"]
    assert cluster.events(0, 31.0)["events"][-1]["kind"] == "nvrm"  # other nodes: only the driver load


@pytest.mark.parametrize(
    ("fault", "series", "labels"),
    [
        ("ecc_storm@1:2+10", "fleetscope_gpu_ecc_volatile_corrected_errors_total", {"gpu": "2"}),
        ("nvlink_crc@1:2.7+10", "fleetscope_nvlink_crc_flit_errors_total", {"gpu": "2", "link": "7"}),
        (
            "efa_retransmit@1:3+10",
            "fleetscope_efa_retransmit_timeout_events_total",
            {"device": "efa_3", "port": "1"},
        ),
        ("slow_checkpoint@1+10", "fleetscope_host_cpu_seconds_total", {"mode": "iowait"}),
    ],
)
def test_counter_faults_rise_only_on_their_place_and_stop_with_the_fault(
    fault: str, series: str, labels: dict[str, str]
) -> None:
    cluster = SimulatedCluster(2, [parse_fault(fault + "/20", 2)])
    key = tuple(sorted({"port": "1", **labels}.items() if "device" in labels else labels.items()))
    values = [_families(cluster, 0, t)[series][key] for t in (5.0, 10.0, 20.0, 30.0, 40.0)]
    healthy = [_families(cluster, 1, t)[series][key] for t in (5.0, 20.0)]
    assert values[2] > values[1] and values[3] > values[2]  # rising while the fault is on
    assert values[4] - values[3] < (values[2] - values[1]) / 10  # back to its healthy pace after it
    assert healthy[1] - healthy[0] < (values[2] - values[1]) / 10  # a healthy peer barely moves


def test_thermal_slowdown_sets_the_reasons_and_slows_the_rank() -> None:
    cluster = SimulatedCluster(2, [parse_fault("thermal@2:4+10", 2)])
    hot = _families(cluster, 1, 20.0)
    reason = hot["fleetscope_gpu_clock_event_reason_active"]
    assert reason[(("gpu", "4"), ("reason", "hw_thermal_slowdown"))] == 1.0
    assert reason[(("gpu", "3"), ("reason", "hw_thermal_slowdown"))] == 0.0
    assert hot["fleetscope_gpu_temperature_celsius"][(("gpu", "4"),)] > 87  # H100 slowdown temperature
    wait = hot["fleetscope_training_phase_seconds_total"]
    healthy = _families(cluster, 1, 10.0)["fleetscope_training_phase_seconds_total"]

    def waited(rank: str) -> float:
        key = (("phase", "collective_wait"), ("rank", rank))
        return wait[key] - healthy[key]

    # In synchronous training the slow rank (12 = node 2, GPU 4) is the one that waits least.
    assert waited("12") < min(waited(str(rank)) for rank in range(8, 16) if rank != 12)


def test_a_dead_node_stops_answering_and_comes_back(tmp_path: Path) -> None:
    import time

    started = time.time()
    cluster = SimulatedCluster(2, [parse_fault("dead_node@2+1/2", 2)], start=started)
    endpoints = ExporterEndpoints(cluster, poll=0.05).start()
    try:
        address = endpoints.targets()["sim-node-0002"]
        write_file_sd(tmp_path / "sd.json", endpoints.targets())
        assert json.loads((tmp_path / "sd.json").read_text())[1] == {
            "targets": [address],
            "labels": {"node": "sim-node-0002"},
        }
        assert "fleetscope_simulation_info" in _scrape(f"http://{address}/metrics")
        time.sleep(max(0.0, started + 1.8 - time.time()))
        with pytest.raises(OSError):  # refused, or reset if it was queued as the port closed
            _scrape(f"http://{address}/metrics")
        _scrape(f"http://{endpoints.targets()['sim-node-0001']}/metrics")  # the others still answer
        time.sleep(max(0.0, started + 3.5 - time.time()))
        assert "fleetscope_gpu_up" in _scrape(f"http://{address}/metrics")
    finally:
        endpoints.stop()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("xid79@3", "is not KIND@NODE"),
        ("meltdown@1+5", "fault kind 'meltdown' is unknown"),
        ("xid79@9+5", "not in this cluster of 4 nodes"),
        ("xid79@1:8+5", "gpu 8 does not exist"),
        ("nvlink_crc@1:0.18+5", "NVLink 18 does not exist"),
        ("straggler@1:1.2+5", "GPU.LINK is only for nvlink_crc"),
        ("efa_retransmit@node-7+5", "neither a node number nor a name"),
        ("ecc_storm@1:0+5/0", "duration must be above 0"),
    ],
)
def test_bad_faults_are_refused_with_what_is_wrong(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_fault(text, 4)


def test_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: mixed\nnodes: 8\nfaults:\n  - xid79@sim-node-0003:1+60\n"
        "  - {kind: nvlink_crc, node: 2, where: '4.11', at: 30, duration: 90}\n"
    )
    scenario = load_scenario(path)
    assert (scenario.name, scenario.nodes) == ("mixed", 8)
    assert [f.describe(f"sim-node-{f.node + 1:04d}") for f in scenario.faults] == [
        "xid79@sim-node-0003:1+60",
        "nvlink_crc@sim-node-0002:4.11+30/90",
    ]
    path.write_text("nodes: 2\nfaults: [thermal@5:0+1]\n")
    with pytest.raises(ValueError, match=r"s.yaml, fault 1: node '5' is not in this cluster of 2 nodes"):
        load_scenario(path)


def test_the_command_says_it_is_a_simulation_and_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "fleetscope.console.cli", "simulate", "--nodes", "2"]
    done = subprocess.run(
        [*command, "--duration", "0", "--file-sd", str(tmp_path / "sd.json"), "--fault", "thermal@2:1+5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "SIMULATION: 2 simulated nodes x 8 GPUs (scenario adhoc); not a real cluster\n"
    )
    assert "  fault: thermal@sim-node-0002:1+5\n" in done.stdout
    assert len(json.loads((tmp_path / "sd.json").read_text())) == 2
    bad = subprocess.run([*command, "--fault", "xid79@7+1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "node '7' is not in this cluster of 2 nodes" in bad.stderr
    assert "Traceback" not in bad.stderr
