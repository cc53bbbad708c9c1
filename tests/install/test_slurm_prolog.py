"""The Slurm prolog and epilog in ``deploy/slurm/``, run by ``sh`` with the environment slurmd gives them.

The job-to-GPU record they write and delete is what the exporter reads: ``<job_id>.json`` in the jobs
folder with exactly ``job_id``, ``step_id``, ``user``, ``gpus``, ``uuids`` and ``started_at``. Where a
test needs ``nvidia-smi`` (no GPU here), a stand-in prints the index and UUID of each GPU of a real
``nvidia-smi -q`` capture (8x H100, ``tests/fixtures/nvidia-smi/``) in ``--query-gpu=index,uuid`` form.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROLOG = ROOT / "deploy" / "slurm" / "fleetscope-prolog.sh"
EPILOG = ROOT / "deploy" / "slurm" / "fleetscope-epilog.sh"
H100_CAPTURE = ROOT / "tests" / "fixtures" / "nvidia-smi" / "h100-sxm-80gb-x8_drv565.57.01.txt"


def run(
    script: Path, jobs: Path, path: str = "/usr/bin:/bin", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(script)],
        env={"PATH": path, "FLEETSCOPE_JOBS_DIR": str(jobs), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def nvidia_smi(tmp_path: Path) -> str:
    """A PATH whose ``nvidia-smi`` answers ``--query-gpu=index,uuid`` from the H100 capture."""
    uuids = re.findall(r"GPU UUID\s+: (\S+)", H100_CAPTURE.read_text())
    assert len(uuids) == 8
    answer = "".join(f"{index}, {uuid}\n" for index, uuid in enumerate(uuids))
    folder = tmp_path / "bin"
    folder.mkdir()
    tool = folder / "nvidia-smi"
    tool.write_text(
        '#!/bin/sh\n[ "$*" = "--query-gpu=index,uuid --format=csv,noheader" ] || exit 2\n'
        f"cat <<'END'\n{answer}END\n"
    )
    tool.chmod(0o755)
    return f"{folder}:/usr/bin:/bin"


def test_prolog_writes_the_record_the_exporter_reads_and_the_epilog_deletes_it(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    before = datetime.now(UTC).replace(microsecond=0)
    done = run(PROLOG, jobs, SLURM_JOB_ID="4242", SLURM_JOB_USER="alice", SLURM_JOB_GPUS="0,3")
    assert done.returncode == 0 and done.stderr == ""
    record_path = jobs / "4242.json"
    record = json.loads(record_path.read_text())
    assert set(record) == {"job_id", "step_id", "user", "gpus", "uuids", "started_at"}
    assert record["job_id"] == "4242" and record["step_id"] is None and record["user"] == "alice"
    assert record["gpus"] == [0, 3] and record["uuids"] == []  # no nvidia-smi on this PATH
    started = datetime.strptime(record["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= started <= datetime.now(UTC) + timedelta(seconds=1)
    assert stat.S_IMODE(record_path.stat().st_mode) == 0o644
    assert [p.name for p in jobs.iterdir()] == ["4242.json"]  # no temporary file left

    done = run(EPILOG, jobs, SLURM_JOB_ID="4242")
    assert done.returncode == 0 and done.stderr == ""
    assert list(jobs.iterdir()) == []


def test_step_gpus_and_uuids_from_nvidia_smi(tmp_path: Path, nvidia_smi: str) -> None:
    jobs = tmp_path / "jobs"
    done = run(
        PROLOG,
        jobs,
        nvidia_smi,
        SLURM_JOB_ID="7",
        SLURM_STEP_ID="0",
        SLURM_JOB_USER="bob",
        SLURM_STEP_GPUS="6,7",
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((jobs / "7.json").read_text())
    assert record["step_id"] == "0"
    assert record["gpus"] == [6, 7]
    assert record["uuids"] == [
        "GPU-00000000-0000-0000-0000-000000000007",
        "GPU-00000000-0000-0000-0000-000000000008",
    ]


def test_cuda_visible_devices_given_as_uuids_are_mapped_to_indexes(tmp_path: Path, nvidia_smi: str) -> None:
    jobs = tmp_path / "jobs"
    uuid = "GPU-00000000-0000-0000-0000-000000000003"
    done = run(PROLOG, jobs, nvidia_smi, SLURM_JOB_ID="8", SLURM_JOB_USER="carol", CUDA_VISIBLE_DEVICES=uuid)
    assert done.returncode == 0, done.stderr
    record = json.loads((jobs / "8.json").read_text())
    assert (record["gpus"], record["uuids"]) == ([2], [uuid])


def test_awkward_user_names_stay_valid_json(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    done = run(PROLOG, jobs, SLURM_JOB_ID="9", SLURM_JOB_USER='o"brien\\x', SLURM_JOB_GPUS="")
    assert done.returncode == 0, done.stderr
    record = json.loads((jobs / "9.json").read_text())
    assert record["user"] == 'o"brien\\x' and record["gpus"] == []


@pytest.mark.parametrize("script", [PROLOG, EPILOG])
def test_a_bad_job_id_is_reported_and_never_fails_the_job(tmp_path: Path, script: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "keep.json").write_text("{}")
    done = run(script, jobs, SLURM_JOB_ID="../keep")
    assert done.returncode == 0  # a failing prolog or epilog drains the node
    assert "not a job id" in done.stderr
    assert [p.name for p in jobs.iterdir()] == ["keep.json"]


def test_an_unwritable_jobs_folder_is_reported_and_never_fails_the_job(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = run(PROLOG, blocker / "jobs", SLURM_JOB_ID="5", SLURM_JOB_USER="dave", SLURM_JOB_GPUS="1")
    assert done.returncode == 0
    assert "cannot create" in done.stderr


def test_scripts_are_executable() -> None:
    for script in (PROLOG, EPILOG):
        assert os.access(script, os.X_OK), script
