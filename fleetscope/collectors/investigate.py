"""The offline investigation: a bundle in, a ranked diagnosis out (``fleetscope investigate``).

Pipeline: :mod:`fleetscope.collectors.bundle` reads files as streams → :mod:`fleetscope.collectors.parsers`
turn lines into evidence → GPU identities are resolved per node (bus id ↔ index ↔ UUID, from ``nvidia-smi``,
NCCL and DCGM lines) and year-less timestamps get the bundle's year → :mod:`fleetscope.collectors.detectors`
produce findings → :mod:`fleetscope.collectors.correlator` ranks root causes. The output dictionary follows
docs/design.md's contract.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prometheus_client.core import Metric

from fleetscope.collectors.bundle import (
    READ_ERRORS,
    BundleFile,
    ReadStats,
    decode,
    is_binary,
    iter_files,
    read_head,
    scan_lines,
)
from fleetscope.collectors.correlator import Correlation, correlate
from fleetscope.collectors.detectors import DETECTORS, Detector
from fleetscope.collectors.evidence import DRIVER_NUMBERING, SEVERITIES, Evidence, Finding
from fleetscope.collectors.kinds import BY_NAME, KINDS, EvidenceError, check, series_readers
from fleetscope.collectors.knowledge import scoring
from fleetscope.collectors.parsers import (
    DOCUMENT_PARSERS,
    LINE_PARSERS,
    DocumentParser,
    FileContext,
    Line,
)
from fleetscope.collectors.parsers.prometheus import window_evidence
from fleetscope.collectors.prefilter import KeywordMatcher
from fleetscope.collectors.prefixes import Prefixes
from fleetscope.collectors.timestamps import split_timestamp, with_year
from fleetscope.collectors.topology import Topology

#: Evidence kept per (node, kind, GPU, key); later repeats are counted, not kept, so memory stays bounded.
MAX_EVIDENCE_PER_KEY = 20
#: Longest timeline returned.
MAX_TIMELINE = 200
#: Evidence lines quoted per root cause.
MAX_QUOTED = 10
#: Items a failing detector may lose before its whole output is given up (each costs a binary search).
MAX_DETECTOR_RETRIES = 20
#: Times a document parser that raised is restarted on the rest of its file.
MAX_DOCUMENT_RESTARTS = 1000

#: The parsers' keywords, each tagged with the indices (in ``LINE_PARSERS``) of the parsers that want it.
_KEYWORDS: dict[str, list[int]] = {}
for _i, _parser in enumerate(LINE_PARSERS):
    for _keyword in _parser.keywords:
        _KEYWORDS.setdefault(_keyword, []).append(_i)
PREFILTER = KeywordMatcher(_KEYWORDS)

Progress = Callable[[int, int], None]
#: What an investigation can say (see :attr:`Investigation.verdict`).
Verdict = Literal["incident", "healthy", "not_judged", "nothing_readable"]


@dataclass(slots=True)
class Unparsed:
    """What the engine could not read.

    Attributes:
        files: Files with nothing recognised (empty, binary, unreadable, or no line gave evidence).
        lines: Lines read that gave no evidence.
        errors: Items lost to an error: lines a parser raised on, evidence that did not match its kind's
            entry (:mod:`fleetscope.collectors.kinds`), evidence a detector raised on.
        notes: One sentence per skipped file and per parser or detector that lost items.
    """

    files: int = 0
    lines: int = 0
    errors: int = 0
    notes: list[str] = field(default_factory=list)
    _losses: dict[tuple[str, str], list[Any]] = field(default_factory=dict)

    def lost(self, where: str, who: str, exc: BaseException, item: str) -> None:
        """Count one item ``who`` lost in ``where`` to ``exc``; the first of each kind is named in notes.

        Args:
            where: The file (relative to the bundle), or ``"detectors"``.
            who: The parser or detector, as the note names it.
            exc: What was raised.
            item: The item lost, as the note names it (``"line 12"``, ``"node-01/dmesg:3"``).
        """
        self.errors += 1
        entry = self._losses.setdefault((where, who), [0, f"{type(exc).__name__}: {exc}"[:200], item])
        entry[0] += 1

    def all_notes(self) -> list[str]:
        """The notes, then one per (file or detectors, parser or detector) that lost items."""
        return self.notes + [
            f"{where}: {count} item(s) lost in {who} ({error}; first: {item})"
            for (where, who), (count, error, item) in self._losses.items()
        ]


@dataclass(slots=True)
class Investigation:
    """The result of :func:`investigate`.

    Attributes:
        correlation: Ranked causes and attached symptoms.
        evidence: All evidence kept (capped per key).
        unparsed: Unread files and lines, with a note per file that was skipped.
        files_read: Text files read.
        lines_read: Lines of those files.
        lines_understood: Lines that gave evidence.
    """

    correlation: Correlation
    evidence: list[Evidence]
    unparsed: Unparsed
    files_read: int
    lines_read: int = 0
    lines_understood: int = 0

    @property
    def incident(self) -> bool:
        """Whether the bundle shows a fault."""
        return self.correlation.incident

    @property
    def verdict(self) -> Verdict:
        """What the investigation can say.

        ``incident``: a fault was found. ``nothing_readable``: no text file at all. ``not_judged``: text
        was read but almost none of it understood (no line gave evidence, or fewer than
        ``judgement.min_lines`` lines did and they are under ``judgement.min_share`` of the lines read),
        so "no incident" would claim a healthy system nobody looked at. ``healthy``: otherwise.
        """
        if self.incident:
            return "incident"
        if self.files_read == 0:
            return "nothing_readable"
        share = self.lines_understood / max(self.lines_read, 1)
        if self.lines_understood == 0 or (
            self.lines_understood < scoring("judgement.min_lines") and share < scoring("judgement.min_share")
        ):
            return "not_judged"
        return "healthy"

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of docs/design.md's contract (``incident``, ``root_causes``, ``timeline`` ...)."""
        causes = self.correlation.causes
        return {
            "incident": self.incident,
            "verdict": self.verdict,
            "root_causes": [
                {
                    "layer": r.finding.layer,
                    "node": r.finding.node,
                    "gpu": r.finding.gpu,
                    "gpu_pci_bus_id": r.finding.gpu_pci_bus_id,
                    "confidence": r.confidence,
                    "certainty": r.certainty,
                    "kind": r.finding.kind,
                    "summary": r.finding.summary,
                    "action": r.finding.action,
                    "evidence": [_quote(e) for e in r.finding.evidence[:MAX_QUOTED]],
                    "explains": len(r.explains),
                }
                for r in causes
            ],
            "timeline": [_timeline_item(e) for e in self.timeline()],
            "symptoms": [
                {
                    "layer": s.layer,
                    "node": s.node,
                    "gpu": s.gpu,
                    "gpu_pci_bus_id": s.gpu_pci_bus_id,
                    "kind": s.kind,
                    "summary": s.summary,
                    "count": s.count,
                    "explained_by": explained,
                    "evidence": [_quote(e) for e in s.evidence[:3]],
                }
                for s, explained in self.correlation.symptoms
            ],
            "unparsed": {
                "files": self.unparsed.files,
                "lines": self.unparsed.lines,
                "errors": self.unparsed.errors,
            },
            "understood": {"lines": self.lines_understood, "of_lines": self.lines_read},
            "notes": self.unparsed.all_notes(),
        }

    def timeline(self) -> list[Evidence]:
        """Warning-or-worse evidence and everything quoted by a finding, in time order (untimed last)."""
        quoted = {id(e) for r in self.correlation.causes for e in r.finding.evidence}
        quoted |= {id(e) for s, _ in self.correlation.symptoms for e in s.evidence}
        shown = set(SEVERITIES[: SEVERITIES.index("warning") + 1])
        items = [e for e in self.evidence if e.severity in shown or id(e) in quoted]
        order = {id(e): i for i, e in enumerate(items)}
        items.sort(key=lambda e: (e.time is None, e.time.timestamp() if e.time else 0.0, order[id(e)]))
        return items[:MAX_TIMELINE]


def investigate(bundle: Path, progress: Progress | None = None) -> Investigation:
    """Investigate a bundle of logs collected from a cluster.

    Args:
        bundle: The bundle folder: one sub-folder per node, cluster-wide files at the top.
        progress: Called as ``progress(bytes_done, bytes_total)`` as bytes are read (every few MB
            within a file, and after each file), if given.

    Returns:
        The investigation; see :meth:`Investigation.to_dict` for the output contract.

    Raises:
        fleetscope.collectors.bundle.BundleError: ``bundle`` is missing or not a folder.
    """
    files = list(iter_files(bundle))
    total = sum(f.size for f in files)
    done = 0
    unparsed = Unparsed()
    nested = _nested_bundle_hint(files)
    if nested:
        unparsed.notes.append(nested)
    kept = _EvidenceStore()
    files_read = lines_read = lines_understood = 0
    for f in files:
        stats = ReadStats()
        if progress is not None:
            # Within one file: bytes read so far (a gzip file's count is of its content, so capped).
            stats.on_read = lambda n, start=done, size=f.size: progress(start + min(n, size), total)
        try:
            found = _read_file(f, stats, unparsed)
            if found is not None:
                files_read += 1
                # Lines understood: those that gave evidence, and those a parser recognised and skipped.
                n_lines_with_evidence = kept.add_all(found) + stats.recognised
                unparsed.lines += max(0, stats.lines - n_lines_with_evidence)
                lines_read += stats.lines
                lines_understood += n_lines_with_evidence
                if n_lines_with_evidence == 0:
                    unparsed.files += 1
        except OSError as exc:
            unparsed.files += 1
            unparsed.notes.append(f"{f.rel}: unreadable ({exc.strerror or exc})")
        except Exception as exc:  # one malformed file must not cost the whole investigation
            unparsed.files += 1
            unparsed.notes.append(f"{f.rel}: could not be parsed ({type(exc).__name__}: {exc})")
        if stats.truncated:
            unparsed.notes.append(f"{f.rel}: {stats.truncated} line(s) longer than 1 MB were cut")
        done += f.size
        if progress is not None:
            progress(done, total)
    return _conclude(kept, unparsed, files_read, lines_read, lines_understood)


def investigate_window(
    families: Mapping[str, Sequence[Metric]],
    logs: Mapping[str, Sequence[str]],
    topology: Topology | None = None,
) -> Investigation:
    """Investigate a live window handed over as metric families and log lines, with no files in between.

    The samples become evidence through the same mapping as a Prometheus file of a bundle
    (:func:`fleetscope.collectors.parsers.prometheus.window_evidence`: only the series some detector
    reads, and GPU identities; a family nobody reads is skipped whole), the log lines through the same
    line parsers and prefilter, and the rest (GPU identities, detectors, correlator) is
    :func:`investigate`'s. A window written out as a bundle (one folder per node, ``metrics.prom`` and
    ``kernel.log``) gives the same report to :func:`investigate`; only the ``source`` of evidence differs
    (``NODE/metrics:N``, the N-th sample of the node, and ``NODE/events:N`` here). A sample's exposition
    line is written only where a finding quotes it.

    Args:
        families: Per node, its metric families in the window (counters as increases), as
            prometheus-client reads them.
        logs: Per node, its kernel-log lines, oldest first.
        topology: The cluster's map of these families where the caller has it already (the live
            collector's :attr:`~fleetscope.collectors.history.WindowHistory.topology` of the same window),
            so that it is not built twice; None: built from the evidence. Either is made of the window's
            ``_info`` series, all of which become evidence, so the map is the same.

    Returns:
        The investigation; see :meth:`Investigation.to_dict`.
    """
    unparsed = Unparsed()
    kept = _EvidenceStore()
    files_read = lines_read = lines_understood = 0
    # Nodes in name order, each node's log before its samples: the order a bundle's files are read in.
    for node in sorted(set(families) | set(logs)):
        lines = logs.get(node) or []
        if lines:
            understood = kept.add_all(
                _parse_log(_candidates(lines), FileContext(rel=f"{node}/events", node=node), unparsed)
            )
            files_read += 1
            lines_read += len(lines)
            lines_understood += understood
            unparsed.lines += len(lines) - understood
        # Made by the one sample mapping, whose items match their kinds' entries by construction.
        read = window_evidence(families.get(node) or (), node=node, rel=f"{node}/metrics")
        if read.samples:
            kept.add_samples(read.evidence, read.per_name)
            files_read += 1
            lines_read += read.samples
            lines_understood += read.understood
            unparsed.lines += read.samples - read.understood
    return _conclude(kept, unparsed, files_read, lines_read, lines_understood, topology)


def _candidates(lines: Sequence[str]) -> Iterator[tuple[int, bytes, tuple[int, ...]]]:
    """The lines of ``lines`` that hold a parser's keyword, as :func:`scan_lines` yields them."""
    buf = "\n".join(line.replace("\n", " ") for line in lines).encode("utf-8", "replace")
    number, position = 1, 0
    for start, stop, tags in PREFILTER.lines(buf):
        number += buf.count(b"\n", position, start)
        position = start
        yield number, buf[start:stop], tags


def _conclude(
    kept: _EvidenceStore,
    unparsed: Unparsed,
    files_read: int,
    lines_read: int,
    lines_understood: int,
    topology: Topology | None = None,
) -> Investigation:
    """Resolve years and GPU identities, run the detectors, correlate: the end of every investigation.
    One map of the cluster (``topology``, else built from the evidence) serves every detector and the
    correlator."""
    evidence = kept.finish()
    _resolve_years(evidence)
    _resolve_gpus(evidence)
    handed = _handoff(evidence)
    if topology is None:
        topology = Topology.from_evidence(evidence)
    findings: list[Finding] = []
    for detector in DETECTORS:
        given = evidence if detector.sees_all else handed[detector.name]
        findings.extend(run_detector(detector, given, unparsed, topology))
    for finding in findings:
        # Evidence read without a layer (an Xid line) takes its finding's, for the timeline.
        for e in finding.evidence:
            e.layer = e.layer or finding.layer
    return Investigation(
        correlation=correlate(findings, topology),
        evidence=evidence,
        unparsed=unparsed,
        files_read=files_read,
        lines_read=lines_read,
        lines_understood=lines_understood,
    )


def _handoff(evidence: list[Evidence]) -> dict[str, list[Evidence]]:
    """What each detector that does not see everything is handed, in one pass, in the evidence's order:
    the kinds whose entry names it in ``read_by``, and of ``metric`` evidence only the series its
    ``series`` declares, at the values it reads (:func:`fleetscope.collectors.kinds.series_readers`)."""
    given: dict[str, list[Evidence]] = {d.name: [] for d in DETECTORS if not d.sees_all}
    by_kind = {k.name: [given[d] for d in k.read_by if d in given] for k in KINDS if k.name != "metric"}
    metric_readers = [d for d in BY_NAME["metric"].read_by if d in given]
    # Per series name: the lists of the detectors that read its every sample, and of those that read its
    # samples at a value above zero (these included).
    by_series: dict[str, tuple[list[list[Evidence]], list[list[Evidence]]]] = {}
    for e in evidence:
        if e.kind == "metric":
            attrs = e.attrs
            found = by_series.get(attrs["name"])
            if found is None:
                readers = series_readers(attrs["name"])
                every = [given[d] for d in metric_readers if d in readers.every]
                found = by_series[attrs["name"]] = (
                    every,
                    every + [given[d] for d in metric_readers if d in readers.above_zero],
                )
            targets = found[1] if attrs["value"] > 0 else found[0]
        else:
            targets = by_kind.get(e.kind, [])
        for target in targets:
            target.append(e)
    return given


def run_detector(
    detector: type[Detector], evidence: list[Evidence], unparsed: Unparsed, topology: Topology | None = None
) -> list[Finding]:
    """Run one detector; evidence it raises on is left out (counted and noted), never its whole output.

    A detector that raises is run again on ever shorter prefixes of its evidence (a binary search) to
    find the first item without which the prefix no longer fails; that item is dropped and the detector
    run again, at most :data:`MAX_DETECTOR_RETRIES` times.

    Args:
        detector: The detector class.
        evidence: The evidence of the kinds it reads.
        unparsed: Where losses are counted.
        topology: The cluster's map of the whole bundle or window (built once for every detector), or
            None: the detector builds it from ``evidence`` if it needs one.

    Returns:
        Its findings on the evidence it could read.
    """
    items = list(evidence)
    for _ in range(MAX_DETECTOR_RETRIES):
        try:
            return list(detector(topology).detect(items))
        except Exception as exc:  # a detector bug must cost one item, not the detector's findings
            bad = _first_failing(detector, items, topology)
            if bad is None:
                unparsed.lost("detectors", f"detector {detector.name}", exc, f"{len(items)} items")
                return []
            unparsed.lost("detectors", f"detector {detector.name}", exc, items[bad].source)
            del items[bad]
    return []


def _nested_bundle_hint(files: list[BundleFile]) -> str | None:
    """A note when most node folders (two or more) hold folders of their own: maybe a folder of bundles."""
    nodes = {f.node for f in files if f.node is not None}
    deep = {f.node: f.rel for f in files if f.node is not None and f.rel.count("/") >= 2}
    if len(deep) < 2 or 2 * len(deep) < len(nodes):
        return None
    return (
        f"{len(deep)} of the {len(nodes)} node folders hold folders of their own (e.g. {deep[min(deep)]}): "
        "if this is a folder of bundles, investigate one bundle at a time"
    )


def _first_failing(detector: type[Detector], items: list[Evidence], topology: Topology | None) -> int | None:
    """Index of the item whose prefix first makes ``detector`` raise, or ``None`` if none does alone."""

    def fails(n: int) -> bool:
        try:
            list(detector(topology).detect(items[:n]))
        except Exception:  # the probe is the failure itself
            return True
        return False

    if not fails(len(items)):
        return None
    low, high = 0, len(items)  # fails(high) holds, fails(low) does not (no evidence: nothing to read)
    while high - low > 1:
        mid = (low + high) // 2
        if fails(mid):
            high = mid
        else:
            low = mid
    return high - 1


def _read_file(f: BundleFile, stats: ReadStats, unparsed: Unparsed) -> Iterator[Evidence] | None:
    """Return the evidence iterator of one file, or ``None`` (counted) if it is empty or binary."""
    head = read_head(f.path)
    if not head:
        unparsed.files += 1
        unparsed.notes.append(f"{f.rel}: empty file, skipped")
        return None
    if is_binary(head):
        unparsed.files += 1
        unparsed.notes.append(f"{f.rel}: binary file, skipped")
        return None
    ctx = FileContext(rel=f.rel, node=f.node)
    text_head = decode(head)
    for doc in DOCUMENT_PARSERS:
        if doc.sniff(text_head):
            return _parse_document(doc, f, ctx, stats, unparsed)
    return _parse_log(scan_lines(f.path, stats, PREFILTER), ctx, unparsed)


def _parse_document(
    doc: type[DocumentParser], f: BundleFile, ctx: FileContext, stats: ReadStats, unparsed: Unparsed
) -> Iterator[Evidence]:
    """Run a document parser; where it raises, the line it was on is lost and it reads on from the next.

    ``parse`` is called again on the same instance with the rest of the lines, so a parser that keeps its
    state on the instance (a CSV header, the sections read so far) keeps it across the restart.
    """
    position = [0]

    def lines() -> Iterator[Line]:
        for n, raw, _ in scan_lines(f.path, stats):
            position[0] = n
            text = decode(raw)
            yield Line(n, text, Prefixes(None, None, None, text))

    source = lines()
    parser = doc(ctx)
    try:
        for _ in range(MAX_DOCUMENT_RESTARTS):
            try:
                for e in parser.parse(source):
                    if _valid(e, doc.name, f.rel, unparsed):
                        yield e
                return
            except READ_ERRORS:
                raise
            except Exception as exc:  # one odd line must not cost the rest of the document
                unparsed.lost(f.rel, f"parser {doc.name}", exc, f"line {position[0]}")
    finally:
        stats.recognised = parser.recognised


def _parse_log(
    candidates: Iterator[tuple[int, bytes, tuple[int, ...]]], ctx: FileContext, unparsed: Unparsed
) -> Iterator[Evidence]:
    """Run the line parsers over a log's candidate lines (:func:`scan_lines` with the prefilter)."""
    parsers = [cls(ctx) for cls in LINE_PARSERS]
    broken: Exception | None = None
    try:
        for n, raw, wanted in candidates:
            line = Line(n, decode(raw))
            for i in wanted:
                parser = parsers[i]
                try:
                    found = list(parser.feed(line))
                except Exception as exc:  # one odd line costs that line, never the rest of the file
                    unparsed.lost(ctx.rel, f"parser {parser.name}", exc, f"line {n}")
                    continue
                yield from (e for e in found if _valid(e, parser.name, ctx.rel, unparsed))
    except READ_ERRORS as exc:
        broken = exc  # a truncated archive or a failing disk: keep what the lines before it showed
    for parser in parsers:
        try:
            held = list(parser.finish())
        except Exception as exc:  # what it held back is lost, not what it gave line by line
            unparsed.lost(ctx.rel, f"parser {parser.name}", exc, "end of file")
            continue
        yield from (e for e in held if _valid(e, parser.name, ctx.rel, unparsed))
    if broken is not None:
        raise broken


def _valid(e: Evidence, parser: str, rel: str, unparsed: Unparsed) -> bool:
    """Whether ``e`` (read from ``rel``) matches its kind's entry; what does not is counted and noted."""
    try:
        check(e, parser)
    except EvidenceError as exc:
        unparsed.lost(rel, f"parser {parser}", exc, e.source)
        return False
    return True


class _EvidenceStore:
    """Keeps at most :data:`MAX_EVIDENCE_PER_KEY` pieces of evidence per key and counts the rest."""

    def __init__(self) -> None:
        self._kept: list[Evidence] = []
        self._counts: dict[tuple[Any, ...], int] = {}

    def add_all(self, items: Iterable[Evidence]) -> int:
        """Add one file's evidence; return the number of distinct lines that gave evidence."""
        lines: set[str] = set()
        kept, counts = self._kept, self._counts
        for e in items:
            lines.add(e.source)
            key = _key(e)
            count = counts[key] = counts.get(key, 0) + 1
            if count <= MAX_EVIDENCE_PER_KEY:
                kept.append(e)
        return len(lines)

    def add_samples(self, items: list[Evidence], per_name: Mapping[str, int]) -> None:
        """Add the evidence of one node's window samples (:func:`window_evidence`'s, with its count of
        evidence per sample name).

        A ``metric`` item's key is one series of the node (its name and labels); no log line and no other
        node makes one, so the items of a name that gave at most :data:`MAX_EVIDENCE_PER_KEY` of them can
        never pass the cap and are kept without building their keys. ``gpu_identity`` items, which a log
        line can also give, are counted as :meth:`add_all` counts them.
        """
        kept, counts = self._kept, self._counts
        crowded = {name for name, n in per_name.items() if n > MAX_EVIDENCE_PER_KEY}
        for e in items:
            if e.kind == "metric" and e.attrs["name"] not in crowded:
                kept.append(e)
                continue
            key = _key(e)
            count = counts[key] = counts.get(key, 0) + 1
            if count <= MAX_EVIDENCE_PER_KEY:
                kept.append(e)

    def finish(self) -> list[Evidence]:
        """The evidence kept, the first item of each key that had more saying how many it stands for."""
        over = {key: count for key, count in self._counts.items() if count > MAX_EVIDENCE_PER_KEY}
        for e in self._kept if over else ():
            count = over.pop(_key(e), None)
            if count is not None:
                e.attrs["repeats"] = count - MAX_EVIDENCE_PER_KEY + 1
        return self._kept


#: The attribute that tells apart items of one kind on one GPU, first found first.
_DETAIL = ("xid", "signature", "name", "status", "path", "link", "rank", "result", "package", "seq")


def _key(e: Evidence) -> tuple[Any, ...]:
    a = e.attrs
    detail = None
    for k in _DETAIL:
        if k in a:
            detail = a[k]
            break
    labels = tuple(a["labels"].items()) if "labels" in a else ()
    if len(labels) > 1:
        labels = tuple(sorted(labels))  # one series whatever order its labels came in
    return (e.node, e.kind, e.gpu, e.gpu_pci_bus_id, detail, labels)


def _resolve_years(evidence: list[Evidence]) -> None:
    """Give syslog/glog stamps (no year) the year most other stamps of their node (or the bundle) name."""
    years: dict[str | None, Counter[int]] = {}
    for e in evidence:
        if e.time is not None:
            years.setdefault(e.node, Counter())[e.time.year] += 1
    everywhere = sum(years.values(), Counter())
    for e in evidence:
        if e.time is not None or not e.time_raw:
            continue
        counter = years.get(e.node) or everywhere
        if not counter:
            continue
        stamp, _ = split_timestamp(e.time_raw + " ")
        if stamp is not None and stamp.yearless:
            e.time = with_year(stamp, counter.most_common(1)[0][0])


def _resolve_gpus(evidence: list[Evidence]) -> None:
    """Fill GPU index from bus id (and back) where some file of the same node states the mapping.

    Mappings come from ``gpu_identity`` evidence (nvidia-smi ``-q``/``-L``/table/``--query-gpu`` CSV,
    NCCL, DCGM labels, UUIDs). Where none covers a bus id, the driver's instance number from an NVRM line
    (``attrs["driver_gpu"]``) stands in, and the evidence is marked with :data:`DRIVER_NUMBERING`.
    """
    identities = [e for e in evidence if e.kind == "gpu_identity"]
    by_bus: dict[tuple[str | None, str], int] = {}
    by_index: dict[tuple[str | None, int], str] = {}
    for e in identities:
        if e.gpu is not None and e.gpu_pci_bus_id:
            by_bus.setdefault((e.node, e.gpu_pci_bus_id), e.gpu)
            by_index.setdefault((e.node, e.gpu), e.gpu_pci_bus_id)
    uuid_index = {
        (e.node, e.attrs["uuid"]): e.gpu for e in identities if e.gpu is not None and e.attrs.get("uuid")
    }
    uuid_bus = {
        (e.node, e.attrs["uuid"]): e.gpu_pci_bus_id
        for e in identities
        if e.gpu_pci_bus_id and e.attrs.get("uuid")
    }
    for (node, uuid), bus in uuid_bus.items():
        if (node, uuid) in uuid_index and bus:
            by_bus.setdefault((node, bus), uuid_index[(node, uuid)])
            by_index.setdefault((node, uuid_index[(node, uuid)]), bus)
    # The driver's own instance number ("RPC response from GPU3 GSP!") follows PCI order, as nvidia-smi's
    # default numbering does; it stands in for the index only where no file of the node maps the bus id,
    # and never takes an index a real mapping gives another GPU.
    driver: dict[tuple[str | None, str], int] = {}
    for e in evidence:
        if e.gpu_pci_bus_id and isinstance(e.attrs.get("driver_gpu"), int):
            driver.setdefault((e.node, e.gpu_pci_bus_id), e.attrs["driver_gpu"])
    numbered_by_driver: set[tuple[str | None, str]] = set()
    for (node, bus), instance in driver.items():
        if (node, bus) not in by_bus and (node, instance) not in by_index:
            by_bus[(node, bus)] = instance
            by_index[(node, instance)] = bus
            numbered_by_driver.add((node, bus))
    for e in evidence:
        if e.gpu is None and e.gpu_pci_bus_id:
            e.gpu = by_bus.get((e.node, e.gpu_pci_bus_id))
            if (e.node, e.gpu_pci_bus_id) in numbered_by_driver:
                e.attrs[DRIVER_NUMBERING] = True
        elif e.gpu is not None and not e.gpu_pci_bus_id:
            e.gpu_pci_bus_id = by_index.get((e.node, e.gpu))


def _quote(e: Evidence) -> dict[str, str]:
    return {"source": e.source, "text": e.text}


def _timeline_item(e: Evidence) -> dict[str, Any]:
    return {
        "time": e.time.isoformat() if e.time else None,
        "time_raw": e.time_raw,
        "node": e.node,
        "layer": e.layer,
        "kind": e.kind,
        "text": e.text,
        "source": e.source,
    }
