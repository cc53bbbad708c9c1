"""What the console makes of a window and of a report: the GPU, link and rank tables of
``cluster_state.read_state`` and the timeline of ``charts``, on exposition text in the exporter's own
metric names (parsed as the collector's sources parse them) and on the engine's reports of example bundles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetscope.collectors import investigate
from fleetscope.collectors.live import FileSDSource, NodeSnapshot
from fleetscope.console.charts import timeline_chart, timeline_frame
from fleetscope.console.cluster_state import look, read_state
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "fleetscope" / "examples" / "incidents"
APP = ROOT / "fleetscope" / "console" / "app.py"

WINDOW = """\
# TYPE fleetscope_gpu_temperature_celsius gauge
fleetscope_gpu_temperature_celsius{gpu="0"} 88.0
fleetscope_gpu_temperature_celsius{gpu="1"} 41.0
# TYPE fleetscope_gpu_up gauge
fleetscope_gpu_up{gpu="0"} 1.0
fleetscope_gpu_up{gpu="1"} 1.0
fleetscope_gpu_up{gpu="2"} 0.0
# TYPE fleetscope_gpu_recovery_action gauge
fleetscope_gpu_recovery_action{gpu="1"} 1.0
# TYPE fleetscope_gpu_clock_event_reason_active gauge
fleetscope_gpu_clock_event_reason_active{gpu="0",reason="hw_thermal_slowdown"} 1.0
fleetscope_gpu_clock_event_reason_active{gpu="0",reason="gpu_idle"} 1.0
fleetscope_gpu_clock_event_reason_active{gpu="1",reason="gpu_idle"} 1.0
# TYPE fleetscope_gpu_xid_errors_total untyped
fleetscope_gpu_xid_errors_total{gpu="0",xid="13"} 2.0
fleetscope_gpu_xid_errors_total{gpu="0",xid="31"} 1.0
# TYPE fleetscope_gpu_remapped_rows_uncorrectable_total untyped
fleetscope_gpu_remapped_rows_uncorrectable_total{gpu="1"} 1.0
# TYPE fleetscope_gpu_retired_pages_total untyped
fleetscope_gpu_retired_pages_total{cause="double_bit_ecc",gpu="1"} 2.0
# TYPE fleetscope_infiniband_symbol_errors_total untyped
fleetscope_infiniband_symbol_errors_total{device="mlx5_0",port="1"} 30.0
# TYPE fleetscope_efa_retransmitted_packets_total untyped
fleetscope_efa_retransmitted_packets_total{device="rdmap0",port="1"} 60.0
# TYPE fleetscope_training_step_duration_seconds histogram
fleetscope_training_step_duration_seconds_sum{rank="3"} 130.0
fleetscope_training_step_duration_seconds_count{rank="3"} 110.0
# TYPE fleetscope_training_steps_total untyped
fleetscope_training_steps_total{rank="3"} 10.0
# TYPE fleetscope_training_phase_seconds_total untyped
fleetscope_training_phase_seconds_total{phase="collective_wait",rank="3"} 4.0
fleetscope_training_phase_seconds_total{phase="forward",rank="3"} 2.0
# TYPE fleetscope_training_rank_info gauge
fleetscope_training_rank_info{job_id="j-1",local_rank="3",rank="3",world_size="8"} 1.0
"""


def _window(text: str) -> NodeSnapshot:
    return NodeSnapshot(families=list(text_string_to_metric_families(text)))


def test_a_window_becomes_gpu_link_and_rank_rows() -> None:
    state = read_state({"n1": _window(WINDOW)}, window_seconds=300.0)
    gpus = state.gpus.set_index("gpu")
    assert gpus.loc[0, "temperature_celsius"] == 88.0
    assert gpus.loc[0, "xid_errors"] == 3.0
    assert (gpus.loc[0, "throttled"], gpus.loc[0, "throttle_reasons"]) == (1, "hw_thermal_slowdown")
    assert gpus.loc[1, "throttled"] == 0  # idling is not throttling
    assert gpus.loc[1, "ecc_errors"] == 3.0
    assert (gpus.loc[1, "health"], gpus.loc[1, "status"]) == (1, "the driver asks for recovery action 1")
    assert (gpus.loc[2, "health"], gpus.loc[2, "status"]) == (2, "NVML did not answer")
    links = state.links.set_index("fabric")
    assert links.loc["infiniband", "errors_per_second"] == pytest.approx(30 / 300)
    assert links.loc["efa", "errors_per_second"] == pytest.approx(60 / 300)
    (rank,) = state.ranks.itertuples(index=False)
    assert (rank.job_id, rank.steps) == ("j-1", 10.0)
    assert rank.collective_wait_seconds == pytest.approx(0.4)
    assert rank.step_seconds == pytest.approx(130 / 110)  # the window's step seconds over its steps
    idle = "\n".join(line for line in WINDOW.splitlines() if "step_duration" not in line) + "\n"
    assert read_state({"n1": _window(idle)}, 300.0).ranks["step_seconds"].isna().all()  # no step in it


def test_a_node_that_was_not_read_is_down_and_has_no_rows() -> None:
    state = read_state({}, 300.0, down={"n9": "GET http://n9:9847/metrics: refused"})
    assert state.nodes == ["n9"]
    assert state.gpus.empty and state.links.empty and state.ranks.empty


def test_a_fully_timed_timeline_is_drawn_on_the_clock_with_symptoms_linked_to_their_cause() -> None:
    report = investigate(EXAMPLES / "12-xid13-sm-warp-exception-then-xid109").to_dict()
    frame = timeline_frame(report)
    assert frame["time"].notna().all()
    cause_sources = {e["source"] for e in report["root_causes"][0]["evidence"]}
    assert set(frame[frame["role"] == "cause 1"]["source"]) == cause_sources & set(frame["source"])
    chart = timeline_chart(report)
    assert chart is not None
    spec = chart.to_dict()
    rule, points = spec["layer"]
    assert rule["mark"]["type"] == "rule" and points["encoding"]["x"]["type"] == "temporal"


def test_an_untimed_timeline_is_drawn_in_the_engines_order() -> None:
    report = investigate(EXAMPLES / "50-multinode-xid119-gsp-timeout-collective-hang").to_dict()
    spec = timeline_chart(report).to_dict()  # type: ignore[union-attr]
    assert spec["layer"][-1]["encoding"]["x"]["field"] == "order"


def test_a_dead_target_of_a_targets_file_is_named_by_its_node_label(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: connection refused
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps([{"targets": [dead], "labels": {"node": "sim-node-0003"}}]))
    state = look(FileSDSource(targets), 300.0)
    assert list(state.down) == ["sim-node-0003"]
    assert f"http://{dead}/metrics" in state.down["sim-node-0003"]  # why: the request that failed


def test_the_consoles_reader_process_does_not_run_the_pages(tmp_path: Path) -> None:
    """The reader is spawned from inside Streamlit, whose ``__main__`` is the console script: the child
    imports that script again and must get the look without running a page."""
    dead = f"127.0.0.1:{free_port()}"
    script = f"""
import sys, types
main = types.ModuleType("__main__")  # what Streamlit's ScriptRunner installs while the app runs
main.__file__ = {str(APP)!r}
sys.modules["__main__"] = main
from fleetscope.console.cluster_state import Sampler
sampler = Sampler.in_process_of_its_own(["node-07={dead}"], None, None, 300.0)
print(sorted(sampler.latest().down))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['node-07']"  # the child read the dead target
    assert "ScriptRunContext" not in done.stderr  # and ran no Streamlit command
