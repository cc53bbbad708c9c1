"""Job attribution: which Slurm job or Kubernetes pod holds each GPU, as one ``_info`` series per pair.

``fleetscope_gpu_job_info{gpu,job_id,step_id,user,pod_uid,pod_namespace,pod_name,source} 1`` is joined
in PromQL
(``... * on (gpu) group_left (job_id) fleetscope_gpu_job_info``); no other series carries a job label, so
a job ending and the next starting changes a handful of series, not every GPU series. Per GPU at most
``max_per_gpu`` jobs are exported; more are counted in ``fleetscope_gpu_job_attribution_dropped``.

Sources, first match wins for a GPU:

1. **Job mapping files** a Slurm prolog writes (the epilog deletes them): ``{mapping_dir}/<job_id>.json``,
   an object ``{"job_id": str, "step_id": str | null, "user": str, "gpus": [int nvidia-smi index],
   "uuids": [GPU UUID], "started_at": RFC 3339 UTC}``. ``uuids``, when given, are matched against NVML's
   UUIDs, else ``gpus`` against NVML indexes (nvidia-smi and NVML both number GPUs by PCI bus id). A file
   that is half written, not JSON, or not of that shape is skipped and counted in
   ``fleetscope_job_mapping_files_invalid``; it is read again once it changes.
2. **The kubelet's pod-resources API** (:mod:`fleetscope.exporters.podresources`), on a Kubernetes node:
   the pod (name and namespace) each ``nvidia.com/gpu`` device was allocated to, by GPU UUID (or index).
   A call that fails or times out keeps the pods of the last call that answered, and
   ``fleetscope_kubelet_pod_resources_up`` says so; without the socket the source is skipped.
3. **The processes on the GPU** (``nvmlDeviceGetComputeRunningProcesses``, from the gpu collector):
   ``{procfs}/<pid>/environ`` (``SLURM_JOB_ID``, ``SLURM_STEP_ID``, ``SLURM_JOB_USER``), then
   ``{procfs}/<pid>/cgroup``: Slurm's ``.../job_<id>/step_<id>/...`` (cgroup v1 and v2), Kubernetes'
   ``.../kubepods...pod<uid>...`` (the pod UID only: name and namespace are the kubelet's to tell).

The pod labels are named ``pod_namespace`` and ``pod_name``, not ``namespace`` and ``pod``: those are the
target labels Prometheus' Kubernetes discovery gives the exporter's own pod, and would clash.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import Metric
from pydantic import BaseModel, ConfigDict, ValidationError

from fleetscope.exporters.metrics import MetricSpec, add
from fleetscope.exporters.podresources import DEFAULT_SOCKET, PodResourcesClient
from fleetscope.exporters.registry import BuildContext, Setting, register
from fleetscope.exporters.scrape import SourceUnavailable

log = logging.getLogger(__name__)

JOB_INFO = MetricSpec(
    "fleetscope_gpu_job_info",
    "gauge",
    "The job on a GPU, value 1, to join on gpu: from the Slurm prolog's job mapping file, the kubelet's "
    "pod-resources List (Kubernetes pod name and namespace), the GPU processes' environment "
    "(SLURM_JOB_ID) or cgroup (Slurm job, Kubernetes pod UID).",
    "job mapping file, kubelet v1.PodResourcesLister/List, /proc/<pid>/environ, /proc/<pid>/cgroup",
    labels=("gpu", "job_id", "step_id", "user", "pod_uid", "pod_namespace", "pod_name", "source"),
)
DROPPED = MetricSpec(
    "fleetscope_gpu_job_attribution_dropped",
    "gauge",
    "Jobs found on a GPU beyond the per-GPU limit in this scrape, left out of fleetscope_gpu_job_info.",
    "attribution",
    labels=("gpu",),
)
INVALID = MetricSpec(
    "fleetscope_job_mapping_files_invalid",
    "gauge",
    "Job mapping files skipped in this scrape: half written, not JSON, or not of the documented shape.",
    "job mapping directory",
)
KUBELET_UP = MetricSpec(
    "fleetscope_kubelet_pod_resources_up",
    "gauge",
    "1 if the kubelet's pod-resources List answered in this scrape, 0 if it failed or timed out (the "
    "pods of its last answer are kept); absent without the socket.",
    "kubelet v1.PodResourcesLister/List",
)
METRICS = (JOB_INFO, DROPPED, INVALID, KUBELET_UP)

_MAX_FILE_BYTES = 64 * 1024  # a mapping lists a node's GPUs; anything bigger is not one
_SLURM_CGROUP = re.compile(r"/job_(?P<job>\d+)(?:/step_(?P<step>[^/]+))?")
_POD_CGROUP = re.compile(
    r"kubepods.*?pod(?P<uid>[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)


class JobMapping(BaseModel):
    """One job mapping file, as the Slurm prolog writes it (see the module docstring)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str
    step_id: str | None
    user: str
    gpus: list[int]
    uuids: list[str]
    started_at: str


@dataclass(frozen=True)
class Job:
    """A job on a GPU: the label values of ``fleetscope_gpu_job_info`` after ``gpu``."""

    job_id: str = ""
    step_id: str = ""
    user: str = ""
    pod_uid: str = ""
    pod_namespace: str = ""
    pod_name: str = ""
    source: str = ""


def job_from_cgroup(text: str) -> Job | None:
    """The Slurm job or Kubernetes pod in a ``/proc/<pid>/cgroup`` file, if any.

    Slurm: ``0::/system.slice/slurmstepd.scope/job_42/step_0/user/task_0`` (cgroup v2) or
    ``4:memory:/slurm/uid_1000/job_42/step_0/task_0`` (v1). Kubernetes:
    ``0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/...`` or
    ``.../kubepods/burstable/pod<uid>/<container>``.
    """
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        slurm = _SLURM_CGROUP.search(path)
        if slurm:
            return Job(job_id=slurm["job"], step_id=slurm["step"] or "", source="cgroup")
        pod = _POD_CGROUP.search(path)
        if pod:
            return Job(pod_uid=pod["uid"].replace("_", "-"), source="cgroup")
    return None


def job_from_environ(data: bytes) -> Job | None:
    """The Slurm job in a ``/proc/<pid>/environ`` (NUL-separated ``NAME=value``), if any."""
    env = dict(item.split("=", 1) for item in data.decode("utf-8", "replace").split("\0") if "=" in item)
    if not env.get("SLURM_JOB_ID"):
        return None
    return Job(
        env["SLURM_JOB_ID"], env.get("SLURM_STEP_ID", ""), env.get("SLURM_JOB_USER", ""), source="environ"
    )


class JobCollector:
    """Prometheus collector for GPU-to-job attribution.

    Args:
        gpu: The GPU collector (its process lists and UUIDs); ``None`` leaves only the mapping files'
            ``gpus`` indexes.
        procfs_root: procfs mount point.
        mapping_dir: Directory of job mapping files.
        max_per_gpu: Most jobs exported per GPU.
        pod_resources: The kubelet's pod-resources client; ``None`` for none.
    """

    name = "jobs"

    def __init__(
        self,
        gpu: Any,
        procfs_root: str | Path = "/proc",
        mapping_dir: str | Path = "/run/fleetscope/jobs",
        max_per_gpu: int = 4,
        pod_resources: PodResourcesClient | None = None,
    ) -> None:
        self._gpu = gpu
        self._kubelet = pod_resources
        self._proc = Path(procfs_root)
        self._dir = Path(mapping_dir)
        self._max = max_per_gpu
        # (file name, mtime_ns, size) -> parsed mapping or None when invalid; re-read only when it changes
        self._files: dict[str, tuple[tuple[int, int], JobMapping | None]] = {}

    def collect(self) -> Iterator[Metric]:
        """Yield the job families.

        Raises:
            SourceUnavailable: Neither mapping files nor GPU process lists could be read.
        """
        jobs: dict[str, list[Job]] = {}
        mappings, invalid, dir_error = self._mappings()
        uuids = self._gpu.uuids() if self._gpu is not None else {}
        for mapping in mappings:
            job = Job(mapping.job_id, mapping.step_id or "", mapping.user, source="mapping_file")
            gpus = [uuids[u] for u in mapping.uuids if u in uuids] if mapping.uuids else []
            for gpu in gpus or [str(i) for i in mapping.gpus]:
                jobs.setdefault(gpu, []).append(job)
        if self._kubelet is not None:
            by_device = {label: label for label in uuids.values()} | uuids  # UUIDs, or indexes
            for device in self._kubelet.devices():
                gpu = by_device.get(device.device_id)
                if gpu is None or (gpu in jobs and jobs[gpu][0].source != "pod_resources"):
                    continue  # not a GPU of this node's NVML, or the prolog's file already names its job
                pod = Job(pod_namespace=device.namespace, pod_name=device.pod, source="pod_resources")
                if pod not in jobs.get(gpu, []):
                    jobs.setdefault(gpu, []).append(pod)
        processes = self._gpu.processes() if self._gpu is not None else {}
        for gpu, pids in processes.items():
            if gpu in jobs:
                continue  # the prolog's file or the kubelet already names this GPU's job
            for pid in pids:
                of_process = self._job_of(pid)
                if of_process is not None and of_process not in jobs.get(gpu, []):
                    jobs.setdefault(gpu, []).append(of_process)
        info, dropped, invalid_family = JOB_INFO.family(), DROPPED.family(), INVALID.family()
        for gpu in sorted(jobs, key=lambda g: (len(g), g)):
            found = sorted(
                jobs[gpu], key=lambda j: (j.job_id, j.step_id, j.pod_uid, j.pod_namespace, j.pod_name)
            )
            for job in found[: self._max]:
                labels = [
                    gpu,
                    job.job_id,
                    job.step_id,
                    job.user,
                    job.pod_uid,
                    job.pod_namespace,
                    job.pod_name,
                ]
                add(info, [*labels, job.source], 1.0)
            add(dropped, [gpu], float(max(0, len(found) - self._max)))
        add(invalid_family, [], float(invalid))
        yield from (info, dropped, invalid_family)
        if self._kubelet is not None and self._kubelet.up is not None:
            kubelet_up = KUBELET_UP.family()
            add(kubelet_up, [], 1.0 if self._kubelet.up else 0.0)
            yield kubelet_up
        if dir_error and not processes:
            raise SourceUnavailable(dir_error)

    def close(self) -> None:
        """Close the kubelet channel, if any."""
        if self._kubelet is not None:
            self._kubelet.close()

    def _job_of(self, pid: int) -> Job | None:
        try:
            job = job_from_environ((self._proc / str(pid) / "environ").read_bytes())
            if job is not None:
                return job
        except OSError:
            pass  # another user's process without CAP_SYS_PTRACE, or gone: try its cgroup
        try:
            return job_from_cgroup((self._proc / str(pid) / "cgroup").read_text())
        except OSError:
            return None

    def _mappings(self) -> tuple[list[JobMapping], int, str | None]:
        try:
            entries = sorted(
                (e for e in os.scandir(self._dir) if e.name.endswith(".json")), key=lambda e: e.name
            )
        except OSError as exc:
            self._files.clear()
            return [], 0, f"job mapping directory unreadable: {exc}"
        mappings, invalid, seen = [], 0, set()
        for entry in entries:
            seen.add(entry.name)
            try:
                stat = entry.stat()
            except OSError:
                continue  # deleted by the epilog since the listing
            key = (stat.st_mtime_ns, stat.st_size)
            cached = self._files.get(entry.name)
            if cached is None or cached[0] != key:
                try:
                    cached = (key, self._read(Path(entry.path), stat.st_size))
                except FileNotFoundError:
                    continue  # deleted by the epilog since the listing
                self._files[entry.name] = cached
            if cached[1] is None:
                invalid += 1
            else:
                mappings.append(cached[1])
        for name in set(self._files) - seen:
            del self._files[name]
        return mappings, invalid, None

    @staticmethod
    def _read(path: Path, size: int) -> JobMapping | None:
        try:
            if size > _MAX_FILE_BYTES:
                raise ValueError(f"{size} bytes, more than a job mapping holds")
            mapping = JobMapping.model_validate(json.loads(path.read_bytes()))
            if path.stem != mapping.job_id:
                raise ValueError(f"file name says job {path.stem}, the file says {mapping.job_id}")
            return mapping
        except FileNotFoundError:
            raise
        except (OSError, ValueError, ValidationError) as exc:
            # json.JSONDecodeError is a ValueError: a prolog caught mid-write lands here
            log.warning("job mapping file %s skipped: %s", path, str(exc).splitlines()[0])
            return None


@register(
    "jobs",
    "GPU to job attribution (Slurm prolog mapping files, process environment and cgroup) as "
    "fleetscope_gpu_job_info.",
    settings=(
        Setting(
            "mapping_dir",
            str,
            "/run/fleetscope/jobs",
            "Directory of JOB_ID.json job mapping files written by the Slurm prolog.",
            metavar="DIR",
        ),
        Setting(
            "max_per_gpu", int, 4, "Most jobs exported per GPU; more are counted.", ge=1, le=64, metavar="N"
        ),
        Setting(
            "kubelet_socket",
            str,
            DEFAULT_SOCKET,
            "The kubelet's pod-resources gRPC socket, for the pod and namespace of each GPU; empty: do not "
            "ask. Skipped where it does not exist.",
            metavar="PATH",
        ),
        Setting(
            "kubelet_timeout_seconds",
            float,
            1.0,
            "Deadline of one pod-resources List call; past it the pods of the last answer are kept.",
            flag="kubelet-timeout",
            ge=0.01,
            le=30,
            metavar="SECONDS",
        ),
    ),
    needs=("gpu",),
)
def _build(ctx: BuildContext) -> JobCollector:
    socket = ctx.setting("kubelet_socket")
    kubelet = PodResourcesClient(socket, ctx.setting("kubelet_timeout_seconds")) if socket else None
    return JobCollector(
        ctx.built.get("gpu"),
        ctx.config.path_procfs,
        ctx.setting("mapping_dir"),
        ctx.setting("max_per_gpu"),
        kubelet,
    )
