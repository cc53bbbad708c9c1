"""Prometheus text exposition: dcgm-exporter (``DCGM_FI_*``), fleetscope (``fleetscope_*``), node_exporter.

Parsed with ``prometheus_client.parser`` (the reference parser), streaming. DCGM's ``gpu`` label is the
NVML index and its ``pci_bus_id`` label the bus id, so every DCGM sample also maps one to the other;
fleetscope's ``fleetscope_gpu_info{gpu,pci_bus_id,uuid}`` does the same. fleetscope's kernel-log series
(``fleetscope_gpu_xid_errors_total{gpu,xid}``) label a GPU NVML could not map by its PCI bus id instead
of an index, so a ``gpu`` label holding a bus id is read as one. Series read back through the PromQL API
come back ``untyped`` under their full sample names; the evidence keeps the name as written either way.

Only what is used becomes evidence: a ``metric`` for a sample some detector declares it reads at its
value (:func:`fleetscope.collectors.kinds.series_readers`; some series are read only above zero), a
``gpu_identity`` where such a sample, or one of a series that states GPU identities
(:data:`IDENTITY_SERIES`), maps an index to a bus id for the first time. Samples of the other recognised
families (:func:`kept`) are understood and skipped before any per-sample work: a line of a bundle's file
before the reference parser reads it, a family of a live window before its samples are looked at (and a
zero sample of a series read only above zero, that maps no identity, with no more work than its value).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any, NamedTuple, TextIO, cast

from prometheus_client.core import Metric
from prometheus_client.parser import text_fd_to_metric_families
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.kinds import series_readers
from fleetscope.collectors.parsers.base import DocumentParser, Line
from fleetscope.formats import canonical_bus_id

_SAMPLE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?\s+[-+0-9.eEnaNIif]+(?:\s+-?\d+)?\s*$")
#: Families recognised (understood); other exporters' series are not used by any detector.
_KEPT = (
    "DCGM_FI_",
    "fleetscope_",
    "node_infiniband_",
    "node_hwmon_",
    "nvidia_smi_",
    "accelerator_nvidia_",
    "node_cpu_",
)
#: Series that map GPU indexes to bus ids and UUIDs whether or not a detector reads them: fleetscope's
#: ``_info`` gauge, and every series of dcgm-exporter, nvidia_gpu_exporter and gpud (their GPU labels).
IDENTITY_SERIES = ("fleetscope_gpu_info", "DCGM_FI_", "nvidia_smi_", "accelerator_nvidia_")
#: The sample names a family may hold besides its own (prometheus-client's parser names families without
#: them): counters, histograms, summaries, OpenMetrics gauge histograms and info.
_SAMPLE_SUFFIXES = ("_total", "_created", "_sum", "_count", "_bucket", "_gsum", "_gcount", "_info")
#: What a sample is used for (:func:`sample_use`): nothing, its GPU identity only, a detector reads it
#: where it is above zero (and it may map a GPU identity), a detector reads it whatever its value.
UNUSED, IDENTITY, READ_ABOVE_ZERO, READ = 0, 1, 2, 3


class PrometheusParser(DocumentParser):
    """Prometheus/OpenMetrics text."""

    name = "prometheus"

    @classmethod
    def sniff(cls, head: str) -> bool:
        lines = [ln for ln in head.splitlines()[:40] if ln.strip()]
        if not lines:
            return False
        good = sum(1 for ln in lines if ln.startswith(("# HELP ", "# TYPE ")) or _SAMPLE.match(ln))
        return good >= max(1, int(len(lines) * 0.8))

    def parse(self, lines: Iterable[Line]) -> Iterator[Evidence]:
        # The reference parser only iterates over its argument, so a generator of lines keeps it streaming.
        numbers: deque[tuple[int, str, int]] = deque()
        seen_identity: set[tuple[int, str]] = set()
        try:
            for family in text_fd_to_metric_families(cast(TextIO, self._used_lines(lines, numbers))):
                for sample in family.samples:
                    number, text, use = numbers.popleft() if numbers else (0, "", UNUSED)
                    found = self._sample(sample, number, text, use, seen_identity)
                    if not found:
                        self.recognised += 1  # a sample of a read family that gave nothing new
                    yield from found
        except ValueError:
            # A line the reference parser rejects ends the file's reading; what came before is kept.
            return

    def _sample(
        self, sample: Sample, number: int, text: str, use: int, seen: set[tuple[int, str]]
    ) -> list[Evidence]:
        labels = dict(sample.labels)
        # The name as exposed: the client library renames counter samples (adds "_total").
        name = text.split("{", 1)[0].split()[0] if text else sample.name
        node = self.ctx.node or labels.get("Hostname") or labels.get("hostname")
        return sample_evidence(
            name,
            labels,
            sample.value,
            node=node,
            source=f"{self.ctx.rel}:{number}",
            seen=seen,
            text=text,
            metric=_metric(use, sample.value),
        )

    def _used_lines(self, lines: Iterable[Line], numbers: deque[tuple[int, str, int]]) -> Iterator[str]:
        """Feed the reference parser the comment lines and the samples some reader uses, noting each
        sample's line number; count the recognised samples nobody uses as understood."""
        for line in lines:
            text = line.text.strip()
            if text.startswith("#"):
                yield text + "\n"
            elif _SAMPLE.match(text):
                name = text.split("{", 1)[0].split()[0]
                use = sample_use(name)
                if use:
                    numbers.append((line.number, text, use))
                    yield text + "\n"
                elif kept(name):
                    self.recognised += 1


def kept(name: str) -> bool:
    """Whether a series of this name is recognised (a family of an exporter fleetscope reads)."""
    return name.startswith(_KEPT)


@lru_cache(maxsize=65536)
def sample_use(name: str) -> int:
    """What a sample of this name is used for: :data:`READ` (a detector reads its every sample),
    :data:`READ_ABOVE_ZERO` (detectors read only its samples above zero), :data:`IDENTITY` (a series
    that may map a GPU's index to its bus id), or :data:`UNUSED`. Cached: names are few."""
    if not kept(name):
        return UNUSED
    readers = series_readers(name)
    if readers.every:
        return READ
    if readers.above_zero:
        return READ_ABOVE_ZERO
    return _identity(name)


def _identity(name: str) -> int:
    return IDENTITY if name.startswith(IDENTITY_SERIES) else UNUSED


def _metric(use: int, value: float) -> bool:
    """Whether a sample of this use and value is ``metric`` evidence."""
    return use == READ or (use == READ_ABOVE_ZERO and value > 0)


@lru_cache(maxsize=65536)
def family_used(name: str) -> bool:
    """Whether any sample a family of this name may hold (its name, ``_total``, ``_sum`` ...) is used."""
    return any(sample_use(name + suffix) for suffix in ("", *_SAMPLE_SUFFIXES))


@lru_cache(maxsize=65536)
def _family_use(name: str) -> tuple[bool, bool]:
    """Whether a family of this name is recognised (:func:`kept`), and whether any of its samples is used
    (:func:`family_used`)."""
    return kept(name), kept(name) and family_used(name)


@lru_cache(maxsize=65536)
def _name_use(name: str) -> tuple[int, bool]:
    """:func:`sample_use` of a sample name, and whether its series states GPU identities."""
    return sample_use(name), kept(name) and _identity(name) == IDENTITY


class WindowEvidence(NamedTuple):
    """What :func:`window_evidence` makes of one node's samples.

    Attributes:
        evidence: What :func:`sample_evidence` makes of the used samples, in their order.
        samples: How many samples the node's families hold.
        understood: How many of them are understood (those of recognised families, used or not).
        per_name: How many pieces of evidence the samples of each name gave (counted once per run of
            samples of one name), which tells the engine's store which names may repeat a series often
            enough to be capped.
    """

    evidence: list[Evidence]
    samples: int
    understood: int
    per_name: dict[str, int]


def window_evidence(families: Iterable[Metric], *, node: str, rel: str) -> WindowEvidence:
    """The evidence of one node's samples as the live collector hands them over (no text round trip).

    The mapping is :func:`sample_evidence`'s, made in bulk: a family nobody reads is skipped whole, what a
    sample name is used for is looked up once per run of samples of that name, a GPU's labels are read
    into its index and bus id once per distinct pair (:func:`gpu_ids`), and each piece of evidence is a
    :class:`SampleEvidence` whose exposition line and source are written only if something reads them.

    Args:
        families: The node's metric families in the window.
        node: The node.
        rel: Where the samples are said to come from (``node-01/metrics``); a sample's source is
            ``rel:N``, N its 1-based position among all the node's samples.

    Returns:
        The evidence, in the samples' order, and the counts of :class:`WindowEvidence`.
    """
    found: list[Evidence] = []
    add = found.append
    seen: set[tuple[int, str]] = set()
    per_name: dict[str, int] = {}
    understood = position = 0
    for family in families:
        samples = family.samples
        start = position
        position += len(samples)
        recognised, used = _family_use(family.name)
        if recognised:
            understood += len(samples)
        if not used:
            continue
        last, use, identity, mark = "", UNUSED, False, len(found)
        for at, sample in enumerate(samples, start + 1):
            name, labels, value = sample.name, sample.labels, sample.value
            if name != last:  # a family's samples mostly share one name
                if use:
                    per_name[last] = per_name.get(last, 0) + len(found) - mark
                last, mark = name, len(found)
                use, identity = _name_use(name)
            if not (use == READ or (use == READ_ABOVE_ZERO and value > 0)):
                if not identity:
                    continue  # at this value nobody reads it: no per-sample work
                metric = False
            else:
                metric = True
            gpu = labels.get("gpu")
            bus = labels.get("pci_bus_id") or labels.get("PCI_BUS_ID")
            index, bus_id = gpu_ids(gpu, bus) if gpu is not None or bus else _NO_GPU
            if index is not None and bus_id and (index, bus_id) not in seen:
                seen.add((index, bus_id))
                uuid = {"uuid": labels.get("UUID") or labels.get("uuid")}
                add(SampleEvidence(sample, "gpu_identity", rel, at, node, index, bus_id, uuid))
            if metric:
                attrs = {"name": name, "value": value, "labels": labels}
                add(SampleEvidence(sample, "metric", rel, at, node, index, bus_id, attrs))
        if use:
            per_name[last] = per_name.get(last, 0) + len(found) - mark
    return WindowEvidence(found, position, understood, per_name)


def sample_line(name: str, labels: dict[str, str], value: float) -> str:
    """One sample as prometheus-client's writer puts it in an exposition (labels escaped, Go floats)."""
    if not labels:
        return f"{name} {floatToGoString(value)}"
    pairs = ",".join(
        '{}="{}"'.format(k, v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\""))
        for k, v in labels.items()
    )
    return f"{name}{{{pairs}}} {floatToGoString(value)}"


#: The slots that hold :attr:`Evidence.text` and :attr:`Evidence.source`.
_TEXT = Evidence.__dict__["text"]
_SOURCE = Evidence.__dict__["source"]
#: The index and bus id of a sample that names no GPU.
_NO_GPU: tuple[None, None] = (None, None)


class SampleEvidence(Evidence):
    """Evidence from a sample handed over without its text: its exposition line (:func:`sample_line`) is
    written when something first reads :attr:`text` (a finding that quotes it), and its source
    (``rel:N``) when something first reads :attr:`source`, not for every sample.

    Args:
        sample: The sample: a ``(name, labels, value, ...)`` tuple (prometheus-client's ``Sample``).
        kind: ``"metric"`` or ``"gpu_identity"``.
        rel: Where the sample was read (``node-01/metrics``).
        at: Its 1-based position there.
        node, gpu, gpu_pci_bus_id, attrs: As :class:`~fleetscope.collectors.evidence.Evidence`'s.
    """

    __slots__ = ("_at", "_sample")

    def __init__(
        self,
        sample: tuple[Any, ...],
        kind: str,
        rel: str,
        at: int,
        node: str | None,
        gpu: int | None,
        gpu_pci_bus_id: str | None,
        attrs: dict[str, Any],
    ) -> None:
        # Every field but the text, which the first read of :attr:`text` writes; the source slot holds
        # ``rel`` until the first read of :attr:`source` adds the position.
        self._sample: tuple[Any, ...] | None = sample
        self._at: int | None = at
        self.kind = kind
        _SOURCE.__set__(self, rel)
        self.node = node
        self.time = None
        self.time_raw = None
        self.gpu = gpu
        self.gpu_pci_bus_id = gpu_pci_bus_id
        self.layer = None
        self.severity = "info"
        self.attrs = attrs

    @property
    def text(self) -> str:
        sample = self._sample
        if sample is not None:
            _TEXT.__set__(self, sample_line(sample[0], sample[1], sample[2])[:1000])
            self._sample = None
        line: str = _TEXT.__get__(self)
        return line

    @text.setter
    def text(self, value: str) -> None:
        _TEXT.__set__(self, value)
        self._sample = None

    @property
    def source(self) -> str:
        if self._at is not None:
            _SOURCE.__set__(self, f"{_SOURCE.__get__(self)}:{self._at}")
            self._at = None
        where: str = _SOURCE.__get__(self)
        return where

    @source.setter
    def source(self, value: str) -> None:
        _SOURCE.__set__(self, value)
        self._at = None


@lru_cache(maxsize=65536)
def gpu_ids(gpu: str | None, bus: str | None) -> tuple[int | None, str | None]:
    """A sample's GPU index and canonical bus id from its ``gpu`` and bus-id labels.

    ``gpu`` is the NVML index, or a bus id where NVML could not map the GPU (fleetscope's kernel-log
    series), read as one where no bus-id label says otherwise. Cached: a cluster's GPUs repeat the same
    few label values.

    Returns:
        ``(index, bus id)``, each None where the labels do not state it.
    """
    index = int(gpu) if gpu is not None and gpu.isdigit() else None
    bus_id = canonical_bus_id(bus) if bus else None
    if gpu is not None and index is None and bus_id is None:
        bus_id = canonical_bus_id(gpu)
    return index, bus_id


def sample_evidence(
    name: str,
    labels: dict[str, str],
    value: float,
    *,
    node: str | None,
    source: str,
    seen: set[tuple[int, str]],
    text: str,
    metric: bool = True,
) -> list[Evidence]:
    """The evidence one Prometheus sample of a file gives: ``metric`` (where ``metric``), and
    ``gpu_identity`` where it maps an index to a bus id for the first time. :func:`window_evidence` makes
    the same of a live window's samples, in bulk.

    Args:
        name: The sample's name as exposed (``DCGM_FI_DEV_XID_ERRORS``, ``fleetscope_gpu_up``).
        labels: Its labels; ``gpu`` is the NVML index (or a bus id where NVML could not map the GPU),
            ``pci_bus_id``/``PCI_BUS_ID`` the bus id, ``UUID``/``uuid`` the GPU's UUID.
        value: Its value.
        node: The node it belongs to, or None.
        source: Where it was read (``node-01/metrics.prom:12``).
        seen: ``(index, bus id)`` pairs already given as ``gpu_identity``; updated.
        text: The sample as written (quoted by findings).
        metric: Whether to give its ``metric`` evidence (some detector reads it), or only its identity.

    Returns:
        The evidence, ``gpu_identity`` first; the types match :mod:`fleetscope.collectors.kinds`' entries by
        construction (``tests/collectors/test_kinds.py`` checks it), so callers need not check each item.
    """
    index, bus_id = gpu_ids(labels.get("gpu"), labels.get("pci_bus_id") or labels.get("PCI_BUS_ID"))
    text = text.strip()[:1000]
    found: list[Evidence] = []
    if index is not None and bus_id and (index, bus_id) not in seen:
        seen.add((index, bus_id))
        uuid = {"uuid": labels.get("UUID") or labels.get("uuid")}
        found.append(
            Evidence("gpu_identity", text, source, node, gpu=index, gpu_pci_bus_id=bus_id, attrs=uuid)
        )
    if metric:
        attrs = {"name": name, "value": value, "labels": labels}
        found.append(Evidence("metric", text, source, node, gpu=index, gpu_pci_bus_id=bus_id, attrs=attrs))
    return found
