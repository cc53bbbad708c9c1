"""Job attribution: mapping files, a real process's environment, cgroup paths, bounded cardinality."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fleetscope.exporters.gpu import GpuCollector
from fleetscope.exporters.jobs import Job, JobCollector, job_from_cgroup
from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import H100_X8, samples


def info(collector: JobCollector) -> dict[str, list[dict[str, str]]]:
    registry = CollectorRegistry()
    registry.register(collector)
    found: dict[str, list[dict[str, str]]] = {}
    for (name, labels), _ in samples(generate_latest(registry).decode()).items():
        if name == "fleetscope_gpu_job_info":
            found.setdefault(dict(labels)["gpu"], []).append(dict(labels))
    return found


@pytest.fixture
def gpu_and_nvml() -> Iterator[tuple[GpuCollector, FakeNvml]]:
    nvml = FakeNvml.from_capture(H100_X8)
    gpu = GpuCollector(nvml)
    yield gpu, nvml
    gpu.close()


def mapping(directory: Path, job_id: str, gpus: list[int]) -> None:
    document = {"job_id": job_id, "step_id": None, "user": "u", "gpus": gpus, "uuids": []}
    (directory / f"{job_id}.json").write_text(json.dumps({**document, "started_at": "2026-11-30T10:00:00Z"}))


def test_a_real_process_environment_names_its_slurm_job(
    gpu_and_nvml: tuple[GpuCollector, FakeNvml], tmp_path: Path
) -> None:
    gpu, nvml = gpu_and_nvml
    env = {**os.environ, "SLURM_JOB_ID": "777", "SLURM_STEP_ID": "3", "SLURM_JOB_USER": "dana"}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        nvml.set_processes(2, [(child.pid, 2**30)])
        list(gpu.collect())
        found = info(JobCollector(gpu, "/proc", tmp_path / "no-mappings"))
    finally:
        child.kill()
        child.wait()
    assert found == {
        "2": [
            {
                "gpu": "2",
                "job_id": "777",
                "step_id": "3",
                "user": "dana",
                "pod_uid": "",
                "pod_namespace": "",
                "pod_name": "",
                "source": "environ",
            }
        ]
    }


def test_jobs_per_gpu_are_bounded_and_the_rest_counted(
    gpu_and_nvml: tuple[GpuCollector, FakeNvml], tmp_path: Path
) -> None:
    gpu, _ = gpu_and_nvml
    list(gpu.collect())
    for job in range(6):
        mapping(tmp_path, str(100 + job), [0])
    collector = JobCollector(gpu, "/proc", tmp_path, max_per_gpu=4)
    assert [j["job_id"] for j in info(collector)["0"]] == ["100", "101", "102", "103"]
    registry = CollectorRegistry()
    registry.register(collector)
    assert (
        samples(generate_latest(registry).decode())[
            ("fleetscope_gpu_job_attribution_dropped", (("gpu", "0"),))
        ]
        == 2
    )


def test_a_bad_file_is_skipped_counted_and_reread_once_fixed(
    gpu_and_nvml: tuple[GpuCollector, FakeNvml], tmp_path: Path
) -> None:
    gpu, _ = gpu_and_nvml
    list(gpu.collect())
    (tmp_path / "55.json").write_text('{"job_id": "55", "user"')
    (tmp_path / "56.json").write_text(
        '{"job_id": "57", "step_id": null, "user": "x", "gpus": [1], '
        '"uuids": [], "started_at": "2026-11-30T10:00:00Z"}'
    )
    collector = JobCollector(gpu, "/proc", tmp_path)
    registry = CollectorRegistry()
    registry.register(collector)
    assert samples(generate_latest(registry).decode())[("fleetscope_job_mapping_files_invalid", ())] == 2
    mapping(tmp_path, "55", [5])
    assert info(collector)["5"][0]["job_id"] == "55"
    (tmp_path / "55.json").unlink()  # the epilog
    assert info(collector) == {}


def test_cgroup_paths_of_slurm_and_kubernetes() -> None:
    # Slurm's cgroup/v2 plugin and cgroup/v1 layouts (slurm.schedmd.com/cgroup_v2.html, cgroups.html).
    assert job_from_cgroup("0::/system.slice/slurmstepd.scope/job_42/step_0/user/task_0\n") == Job(
        job_id="42", step_id="0", source="cgroup"
    )
    assert job_from_cgroup("4:memory:/slurm/uid_1000/job_9/step_batch/task_0\n") == Job(
        job_id="9", step_id="batch", source="cgroup"
    )
    # The kubelet's systemd and cgroupfs drivers (pod UID with _ or -).
    uid = "0d4e5f6a-1b2c-3d4e-5f6a-7b8c9d0e1f2a"
    systemd = (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}.slice/x\n"
    )
    assert job_from_cgroup(systemd) == Job(pod_uid=uid, source="cgroup")
    assert job_from_cgroup(f"0::/kubepods/besteffort/pod{uid}/abc\n") == Job(pod_uid=uid, source="cgroup")
    assert job_from_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n") is None
