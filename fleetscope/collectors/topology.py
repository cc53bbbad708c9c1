"""Job → rank → node → GPU → NVLink / NIC, from the exporters' ``_info`` series.

The exporter puts no job label on its series (docs/style.md: static metadata goes in ``_info`` gauges);
which job holds which GPU and which rank runs where is stated by

- ``fleetscope_gpu_job_info{gpu,job_id,...} 1`` (``exporters/jobs.py``: the Slurm job record or the
  Kubernetes pod that holds the GPU),
- ``fleetscope_training_rank_info{rank,job_id,local_rank,world_size} 1`` (``exporters/training.py``: the
  training hook's identity of each rank on the node),
- ``fleetscope_nvlink_info{gpu,link,remote_pci_bus_id} 1`` (``exporters/nvlink.py``) and
  ``fleetscope_infiniband_port_info{device,port,link_layer} 1`` (``exporters/infiniband.py``).

:class:`Topology` is built from samples (the live collector's window) or from ``metric`` evidence (a
bundle or a window handed to the engine), so the detectors and the collector's history read the same
map. A rank's GPU is the GPU of its node whose index is its local rank, which is how torchrun and Slurm
bind one process per GPU (``LOCAL_RANK`` selects the device); where the node's job record names the
job's GPUs, the local rank indexes that list instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from fleetscope.collectors.evidence import Evidence

#: A sample as the topology reads it: ``(node, name, labels, value)``.
NodeSample = tuple[str | None, str, dict[str, str], float]

GPU_JOB_INFO = "fleetscope_gpu_job_info"
RANK_INFO = "fleetscope_training_rank_info"
NVLINK_INFO = "fleetscope_nvlink_info"
PORT_INFO = "fleetscope_infiniband_port_info"
#: The series the map is built from (a detector that builds it reads them).
SERIES = (GPU_JOB_INFO, RANK_INFO, NVLINK_INFO, PORT_INFO)


class Rank(NamedTuple):
    """Where one rank of a job runs (a named tuple: a cluster has tens of thousands, made every window).

    Attributes:
        job: The job id (empty where the hook had none).
        rank: The global rank.
        node: The node its exporter runs on.
        local_rank: Its rank on the node.
        gpu: The GPU index it uses (see the module docstring), or None where unknown.
    """

    job: str
    rank: int
    node: str
    local_rank: int | None
    gpu: int | None


@dataclass
class Topology:
    """The cluster's map, as its ``_info`` series state it.

    Attributes:
        gpu_jobs: ``(node, gpu index) -> job ids`` holding the GPU.
        ranks: ``(node, rank) -> Rank`` (ranks are numbered per job; the exporter of a node serves the
            ranks that run on it).
        links: ``(node, gpu index) -> {NVLink id: PCI bus id of the device at its other end, or None}``.
        nics: ``node -> {(device, port): link layer}`` of its InfiniBand/EFA ports (``InfiniBand``,
            ``Ethernet`` for RoCE; EFA devices report ``Unspecified``).
    """

    gpu_jobs: dict[tuple[str, int], set[str]] = field(default_factory=dict)
    ranks: dict[tuple[str, int], Rank] = field(default_factory=dict)
    links: dict[tuple[str, int], dict[int, str | None]] = field(default_factory=dict)
    nics: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    #: Per node, per job: the GPU indexes the job holds (an index of ``gpu_jobs``, so lookups stay linear).
    _held: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    #: Per node: the jobs of the ranks that run on it.
    _rank_jobs: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def from_samples(cls, samples: Iterable[NodeSample]) -> Topology:
        """Build the map from ``(node, name, labels, value)`` samples; other series are ignored."""
        topology = cls()
        gpu_jobs, links, nics, held = topology.gpu_jobs, topology.links, topology.nics, topology._held
        rank_info: list[tuple[str, dict[str, str]]] = []
        for node, name, labels, value in samples:
            if name not in SERIES or node is None or value != 1:
                continue
            gpu = labels.get("gpu", "")
            if name == RANK_INFO:
                if labels.get("rank", "").isdigit():
                    rank_info.append((node, labels))
            elif name == GPU_JOB_INFO and gpu.isdigit() and labels.get("job_id"):
                gpu_jobs.setdefault((node, int(gpu)), set()).add(labels["job_id"])
                held.setdefault(node, {}).setdefault(labels["job_id"], []).append(int(gpu))
            elif name == NVLINK_INFO and gpu.isdigit() and labels.get("link", "").isdigit():
                remote = labels.get("remote_pci_bus_id") or None
                links.setdefault((node, int(gpu)), {})[int(labels["link"])] = remote
            elif name == PORT_INFO and labels.get("device"):
                port = (labels["device"], labels.get("port", ""))
                nics.setdefault(node, {})[port] = labels.get("link_layer", "")
        # Each (node, job)'s GPUs in index order, once, for the ranks' GPUs.
        ordered = {
            (node, job): sorted(set(gpus)) for node, jobs in held.items() for job, gpus in jobs.items()
        }
        ranks, rank_jobs = topology.ranks, topology._rank_jobs
        for node, labels in rank_info:
            local = labels.get("local_rank", "")
            local_rank = int(local) if local.isdigit() else None
            job = labels.get("job_id", "")
            rank = int(labels["rank"])
            ranks[(node, rank)] = Rank(
                job, rank, node, local_rank, _gpu_of(ordered.get((node, job)), local_rank)
            )
            if job:
                rank_jobs.setdefault(node, set()).add(job)
        return topology

    @classmethod
    def from_evidence(cls, evidence: Iterable[Evidence]) -> Topology:
        """Build the map from ``metric`` evidence (the same series, read from a bundle or a window)."""
        return cls.from_samples(
            (e.node, e.attrs["name"], e.attrs["labels"], float(e.attrs["value"]))
            for e in evidence
            if e.kind == "metric" and e.attrs["name"] in SERIES
        )

    def gpus_of(self, node: str) -> set[int]:
        """The GPU indexes the map knows on ``node``: those a job holds and those its ranks use."""
        held = {index for (where, index) in self.gpu_jobs if where == node}
        return held | {r.gpu for r in self.ranks.values() if r.node == node and r.gpu is not None}

    def jobs_of(self, node: str) -> set[str]:
        """The jobs that hold a GPU of ``node`` or run a rank on it."""
        return set(self._held.get(node, {})) | self._rank_jobs.get(node, set())

    def groups(self, nodes: Sequence[str]) -> dict[str, list[str]]:
        """Peers: the nodes of each job (a node in two jobs is in both groups); nodes no job names form
        one group ``""``, the cluster as a whole, as a bundle without job records is read."""
        groups: dict[str, list[str]] = {}
        for node in nodes:
            for job in sorted(self.jobs_of(node)) or [""]:
                groups.setdefault(job, []).append(node)
        return groups


def _gpu_of(held: list[int] | None, local_rank: int | None) -> int | None:
    """A rank's GPU: its local rank indexes the GPUs its job holds on the node (in index order), or is
    the device itself where no job record names them (module docstring)."""
    if local_rank is None:
        return None
    if held:
        return held[local_rank] if local_rank < len(held) else None
    return local_rank
