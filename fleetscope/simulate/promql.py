"""A Prometheus-compatible query API over a simulated cluster, for the collector at scale.

Answers what :class:`fleetscope.collectors.live.PromQLSource` asks: ``GET`` or ``POST /api/v1/query``
with ``query`` an instant vector selector (``name{label="v", label=~"re", label!="v", label!~"re"}``,
either part optional) and an optional ``offset`` (``300s``, ``5m``, ``1h``), and ``time`` (Unix seconds
or RFC 3339; default now). The answer has Prometheus's shape (``{"status": "success", "data":
{"resultType": "vector", "result": [{"metric": {...}, "value": [time, "text"]}]}}``), values written as
Prometheus writes them (shortest decimal, no exponent). Every series carries the target labels a
Prometheus scraping the simulated exporters would add (``instance``: the node's name unless given,
``job``), and ``up`` is 1 for a node that answers and 0 for a dead one, whose other series are absent
(stale).

Anything else (functions, operators, range vectors) is answered ``400`` with ``errorType: bad_data``, so
a client can never mistake the simulation for a full Prometheus. ``/api/v1/status/buildinfo`` says it is
a simulation.

**Speed** (:class:`SeriesIndex`): a simulated time step's series are computed once, the first time a
query reaches that moment, and kept for the next few steps, as a Prometheus keeps its samples: the
collector's two queries of one cycle (now, and ``offset`` the window) read steps that earlier cycles
already computed. Each node's series are kept as a *shape* (the names and labels, rendered as JSON
once and shared by every step in which the node serves the same series) and an array of values; a
selector that names metrics only is answered from each shape's index of names, and ``up`` from the
cluster's fault list without computing a series.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import threading
from array import array
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from fleetscope.simulate.cluster import SimulatedCluster

_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_MATCHER = re.compile(rf'\s*({_LABEL})\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_SELECTOR = re.compile(
    r"\s*(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(?P<matchers>.*)\})?"
    r"\s*(?:offset\s+(?P<offset>\d+)(?P<unit>ms|s|m|h|d))?\s*"
)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_COMPACT = (",", ":")  # JSON separators without spaces, as Prometheus writes its answers


class BadQuery(ValueError):
    """A query this API does not answer (only instant vector selectors with an optional offset)."""


@dataclass(frozen=True)
class Selector:
    """A parsed instant vector selector.

    Attributes:
        matchers: (label, operator, value) triples; the metric name is the ``__name__`` label.
        offset: seconds to look back.
    """

    matchers: tuple[tuple[str, str, str], ...]
    offset: float

    @property
    def names_only(self) -> bool:
        """Whether every matcher is on ``__name__`` (then a series' name alone decides)."""
        return all(label == "__name__" for label, _, _ in self.matchers)

    def matches_name(self, name: str) -> bool:
        """Whether the matchers on ``__name__`` alone let a series of this name through."""
        return Selector(tuple(m for m in self.matchers if m[0] == "__name__"), 0).matches({"__name__": name})

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether a series with ``labels`` (``__name__`` included) is selected."""
        for label, op, value in self.matchers:
            have = labels.get(label, "")
            if op == "=" and have != value:
                return False
            if op == "!=" and have == value:
                return False
            if op in ("=~", "!~") and (_regex(value).fullmatch(have) is not None) != (op == "=~"):
                return False
        return True


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def parse_selector(query: str) -> Selector:
    """Parse an instant vector selector with an optional ``offset``.

    Raises:
        BadQuery: anything else, or a selector that could match every series (as Prometheus refuses
            ``{}`` and matchers that all match the empty value).
    """
    m = _SELECTOR.fullmatch(query)
    if m is None or (m["name"] is None and m["matchers"] is None):
        raise BadQuery(f"this simulated API answers instant vector selectors only, not {query!r}")
    matchers: list[tuple[str, str, str]] = []
    if m["name"]:
        matchers.append(("__name__", "=", m["name"]))
    text = (m["matchers"] or "").strip()
    while text:
        found = _MATCHER.match(text)
        if found is None:
            raise BadQuery(f"cannot read the label matchers in {query!r}")
        label, op, value = found.groups()
        value = value.encode().decode("unicode_escape")
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise BadQuery(f"bad regular expression {value!r}: {exc}") from None
        matchers.append((label, op, value))
        text = text[found.end() :].strip()
    if not any(op in ("=", "=~") and not re.fullmatch(value if op == "=~" else re.escape(value), "")
               for _, op, value in matchers):  # fmt: skip
        raise BadQuery("vector selector must contain at least one non-empty matcher")
    offset = int(m["offset"]) * _UNITS[m["unit"]] if m["offset"] else 0.0
    return Selector(tuple(matchers), offset)


def parse_time(text: str | None, default: float) -> float:
    """A query's ``time``: Unix seconds or RFC 3339; ``default`` when absent. Raises BadQuery."""
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise BadQuery(f"cannot parse {text!r} to a valid timestamp") from None


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it (Go's ``FormatFloat(v, 'f', -1, 64)``)."""
    text = repr(value)  # the shortest decimal that reads back as the value, as Go's -1 precision
    if "e" not in text and "n" not in text:  # neither an exponent nor inf / nan
        return text[:-2] if text.endswith(".0") else text
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return format(Decimal(text), "f")


class _Shape:
    """The series one node serves at one step, without their values: names, and labels as JSON.

    A node keeps its shape from step to step while its layout (which of its faults have started and
    are on) stays the same.
    """

    __slots__ = ("fragments", "layout", "names", "selected")

    def __init__(self, layout: object, names: tuple[str, ...], fragments: tuple[str, ...]) -> None:
        #: The cluster's :meth:`~fleetscope.simulate.cluster.SimulatedCluster.layout` it was read at.
        self.layout = layout
        self.names = names
        #: Each series' ``"__name__":"...","label":"value",...`` (the target labels are added per node).
        self.fragments = fragments
        #: Per name-only selector: the positions of the series it selects.
        self.selected: dict[tuple[tuple[str, str, str], ...], tuple[int, ...]] = {}


#: A node at one step: its shape and values, or None where it does not answer.
_Node = tuple[_Shape, array] | None


class SeriesIndex:
    """The series a Prometheus scraping the simulated cluster would hold, answered by selector.

    Args:
        cluster: the simulated cluster.
        job: the ``job`` label of every series.
        instances: each node's ``instance`` label by node name (e.g. its ``host:port``, as a Prometheus
            with static targets names it); a node not in it is named by its name.
        steps: how many simulated moments to keep computed (a collector's window over its interval,
            and a few more); the oldest is dropped first.

    Thread-safe: a step is computed by one thread while the others wait for it.
    """

    def __init__(
        self, cluster: SimulatedCluster, job: str, instances: Mapping[str, str] | None = None, steps: int = 8
    ) -> None:
        self.cluster = cluster
        self._steps: OrderedDict[float, list[_Node]] = OrderedDict()
        self._keep = steps
        self._lock = threading.Lock()
        self._targets = [
            {"instance": (instances or {}).get(name, name), "job": job} for name in cluster.names
        ]
        self._target_json = [json.dumps(target, separators=_COMPACT)[1:-1] for target in self._targets]
        self._fragments: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self._shapes: list[_Shape | None] = [None] * cluster.nodes

    def query(self, query: str, at: float) -> list[str]:
        """The result vector of ``query`` at Unix time ``at`` (module docstring), one JSON object per
        series, ready to join into the answer's ``result`` list.

        Raises:
            BadQuery: the query is not an instant vector selector.
        """
        selector = parse_selector(query)
        t = at - selector.offset - self.cluster.start
        if t < 0:
            return []  # before the simulation: nothing was scraped yet
        stamp = f',"value":[{json.dumps(round(at, 3))},"'
        out: list[str] = []
        only_up = ("__name__", "=", "up") in selector.matchers  # a Prometheus-made series, no node's
        if selector.matches_name("up"):
            for node in range(self.cluster.nodes):
                if selector.matches({"__name__": "up", **self._targets[node]}):
                    value = "1" if self.cluster.alive(node, t) else "0"
                    out.append(f'{{"metric":{{"__name__":"up",{self._target_json[node]}}}{stamp}{value}"]}}')
        for node, entry in enumerate([] if only_up else self._step(t)):
            if entry is None:
                continue
            shape, values = entry
            target = self._target_json[node]
            fragments = shape.fragments
            for i in self._select(selector, shape, node):
                out.append(f'{{"metric":{{{fragments[i]},{target}}}{stamp}{format_value(values[i])}"]}}')
        return out

    def _select(self, selector: Selector, shape: _Shape, node: int) -> tuple[int, ...]:
        if selector.names_only:
            found = shape.selected.get(selector.matchers)
            if found is None:
                verdict = {name: selector.matches_name(name) for name in set(shape.names)}
                found = tuple(i for i, name in enumerate(shape.names) if verdict[name])
                shape.selected[selector.matchers] = found
            return found
        # Other labels too: each series' labels read back from its JSON (small clusters, people's queries).
        return tuple(
            i
            for i, fragment in enumerate(shape.fragments)
            if selector.matches({**json.loads(f"{{{fragment}}}"), **self._targets[node]})
        )

    def _step(self, t: float) -> list[_Node]:
        with self._lock:
            nodes = self._steps.get(t)
            if nodes is None:
                nodes = self._steps[t] = [self._node(node, t) for node in range(self.cluster.nodes)]
                while len(self._steps) > self._keep:
                    self._steps.popitem(last=False)
            else:
                self._steps.move_to_end(t)
            return nodes

    def _node(self, node: int, t: float) -> _Node:
        if not self.cluster.alive(node, t):
            return None
        families = self.cluster.families(node, t)
        layout = self.cluster.layout(node, t)
        shape = self._shapes[node]
        if shape is not None and shape.layout == layout:
            values = array("d", [sample.value for family in families for sample in family.samples])
            if len(values) == len(shape.names):
                return shape, values
        names: list[str] = []
        fragments: list[str] = []
        values = array("d")
        known = self._fragments
        for family in families:
            for sample in family.samples:
                key = (sample.name, tuple(sample.labels.items()))
                fragment = known.get(key)
                if fragment is None:
                    labels = {"__name__": sample.name, **sample.labels}
                    fragment = known[key] = json.dumps(labels, separators=_COMPACT)[1:-1]
                names.append(sample.name)
                fragments.append(fragment)
                values.append(sample.value)
        shape = self._shapes[node] = _Shape(layout, tuple(names), tuple(fragments))
        return shape, values
