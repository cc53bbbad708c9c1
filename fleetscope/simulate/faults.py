"""Faults a simulated cluster can be given: their kinds, the ``--fault`` grammar and YAML scenarios.

A fault is written ``KIND@NODE[:WHERE]+SECONDS[/DURATION]``:

* ``KIND``: one of :data:`KINDS`;
* ``NODE``: a node name (``sim-node-0003``) or its number (``3``, counted from 1);
* ``WHERE``: what on the node, by kind (:data:`KINDS` says which): a GPU index (0-7), a GPU and NVLink
  ``GPU.LINK`` (``2.7``), an EFA device index, or a local rank (0-7); left out, 0;
* ``SECONDS``: when the fault starts, in seconds after the simulation started;
* ``DURATION``: how long it lasts, in seconds; left out, until the simulation ends.

A scenario file is YAML: ``{name: STR, nodes: INT, faults: [FAULT, ...]}`` where each fault is the
string above or a mapping ``{kind, node, where, at, duration}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: Fault kinds: what ``WHERE`` names for each, and what the fault is, in one line.
KINDS: dict[str, tuple[str, str]] = {
    "xid79": ("gpu", "GPU fallen off the bus: Xid 79 in the kernel log, the GPU lost to NVML"),
    "ecc_storm": ("gpu", "a storm of correctable ECC errors and rows remapped on one GPU"),
    "thermal": ("gpu", "thermal slowdown: one GPU past its slowdown temperature, clocks cut"),
    "nvlink_crc": ("link", "CRC and replay errors counting up on one NVLink"),
    "efa_retransmit": ("device", "retransmits, retransmit timeouts and impaired remotes on one EFA device"),
    "straggler": ("rank", "one rank computes slower than its peers; every step waits for it"),
    "dataloader_stall": ("rank", "one rank's data loader stops delivering; the whole job stops stepping"),
    "slow_checkpoint": ("node", "checkpoint writes to slow storage hold up one node's ranks (iowait)"),
    "dead_node": ("node", "the node's exporter stops answering (power loss, kernel panic)"),
}

_FAULT = re.compile(
    r"(?P<kind>[a-z0-9_]+)@(?P<node>[A-Za-z0-9_.-]+?)(?::(?P<where>\d+(?:\.\d+)?))?"
    r"\+(?P<at>\d+(?:\.\d+)?)(?:/(?P<duration>\d+(?:\.\d+)?))?"
)


@dataclass(frozen=True)
class Fault:
    """One injected fault.

    Attributes:
        kind: a key of :data:`KINDS`.
        node: the node's position, from 0.
        where: GPU index, local rank or EFA device index (0 where the kind names the node).
        link: NVLink index for ``nvlink_crc``, else 0.
        at: seconds after the simulation's start when it begins.
        duration: seconds it lasts; None for the rest of the simulation.
    """

    kind: str
    node: int
    where: int = 0
    link: int = 0
    at: float = 0.0
    duration: float | None = None

    @property
    def end(self) -> float:
        """When the fault stops, in simulation seconds (infinity when it never does)."""
        return float("inf") if self.duration is None else self.at + self.duration

    def active(self, t: float) -> bool:
        """Whether the fault is on at simulation time ``t`` (seconds)."""
        return self.at <= t < self.end

    def describe(self, node_name: str) -> str:
        """The fault in the ``--fault`` grammar, with the node's name."""
        where = {"gpu": f":{self.where}", "rank": f":{self.where}", "device": f":{self.where}"}.get(
            KINDS[self.kind][0], f":{self.where}.{self.link}" if self.kind == "nvlink_crc" else ""
        )
        duration = "" if self.duration is None else f"/{self.duration:g}"
        return f"{self.kind}@{node_name}{where}+{self.at:g}{duration}"


def node_name(index: int) -> str:
    """The name of the node at position ``index`` (from 0): ``sim-node-0001`` for 0."""
    return f"sim-node-{index + 1:04d}"


def _node_index(text: str, nodes: int) -> int:
    if text.isdigit():
        index = int(text) - 1
    elif (m := re.fullmatch(r"sim-node-(\d+)", text)) is not None:
        index = int(m[1]) - 1
    else:
        raise ValueError(f"node {text!r} is neither a node number nor a name like {node_name(0)}")
    if not 0 <= index < nodes:
        raise ValueError(f"node {text!r} is not in this cluster of {nodes} nodes")
    return index


def _check(fault: Fault, nodes: int, gpus: int, links: int, devices: int) -> Fault:
    what = KINDS[fault.kind][0]
    bound = {"gpu": gpus, "link": gpus, "rank": gpus, "device": devices, "node": 1}[what]
    if not 0 <= fault.where < bound:
        raise ValueError(f"{fault.kind}: {what} {fault.where} does not exist (0-{bound - 1})")
    if not 0 <= fault.link < links:
        raise ValueError(f"{fault.kind}: NVLink {fault.link} does not exist (0-{links - 1})")
    if fault.duration is not None and fault.duration <= 0:
        raise ValueError(f"{fault.kind}: a duration must be above 0 seconds")
    return fault


def parse_fault(text: str, nodes: int, gpus: int = 8, links: int = 18, devices: int = 4) -> Fault:
    """Read one fault in the ``KIND@NODE[:WHERE]+SECONDS[/DURATION]`` grammar (module docstring).

    Args:
        text: the fault.
        nodes, gpus, links, devices: the cluster's nodes, GPUs per node, NVLinks per GPU and EFA
            devices per node, to check what the fault names exists.

    Raises:
        ValueError: the text does not follow the grammar, names an unknown kind, or something the
            cluster does not have.
    """
    m = _FAULT.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"fault {text!r} is not KIND@NODE[:WHERE]+SECONDS[/DURATION] (e.g. xid79@3:2+60)")
    kind = m["kind"]
    if kind not in KINDS:
        raise ValueError(f"fault kind {kind!r} is unknown; known: {', '.join(KINDS)}")
    where, link = 0, 0
    if m["where"] is not None:
        first, _, second = m["where"].partition(".")
        if second and kind != "nvlink_crc":
            raise ValueError(f"{kind}: GPU.LINK is only for nvlink_crc")
        where, link = int(first), int(second or 0)
    duration = float(m["duration"]) if m["duration"] is not None else None
    fault = Fault(kind, _node_index(m["node"], nodes), where, link, float(m["at"]), duration)
    return _check(fault, nodes, gpus, links, devices)


@dataclass(frozen=True)
class Scenario:
    """A named cluster and its faults.

    Attributes:
        name: shown in ``fleetscope_simulation_info{scenario}`` and the command's output.
        nodes: number of nodes.
        faults: the faults, in the order given.
    """

    name: str
    nodes: int
    faults: tuple[Fault, ...]


def load_scenario(path: Path, gpus: int = 8, links: int = 18, devices: int = 4) -> Scenario:
    """Read a YAML scenario (module docstring).

    Raises:
        ValueError: the file cannot be read, is not YAML of that shape, or a fault in it is bad (the
            message names the file and the fault's position).
    """
    try:
        data: Any = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"scenario {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), int) or data["nodes"] < 1:
        raise ValueError(f"scenario {path}: needs 'nodes' (a whole number above 0) and a 'faults' list")
    faults = data.get("faults") or []
    if not isinstance(faults, list):
        raise ValueError(f"scenario {path}: 'faults' must be a list")
    parsed = []
    for number, item in enumerate(faults, 1):
        if isinstance(item, dict):
            where = f":{item['where']}" if item.get("where") is not None else ""
            duration = f"/{item['duration']}" if item.get("duration") is not None else ""
            item = f"{item.get('kind')}@{item.get('node')}{where}+{item.get('at', 0)}{duration}"
        try:
            parsed.append(parse_fault(str(item), data["nodes"], gpus, links, devices))
        except ValueError as exc:
            raise ValueError(f"scenario {path}, fault {number}: {exc}") from None
    return Scenario(str(data.get("name") or Path(path).stem), data["nodes"], tuple(parsed))
