"""A Prometheus-compatible query API over a simulated cluster, for the collector at scale.

Answers what :class:`fleetscope.collectors.live.PromQLSource` asks: ``GET`` or ``POST /api/v1/query``
with ``query`` an instant vector selector (``name{label="v", label=~"re", label!="v", label!~"re"}``,
either part optional) and an optional ``offset`` (``300s``, ``5m``, ``1h``), and ``time`` (Unix seconds
or RFC 3339; default now). The answer has Prometheus's shape (``{"status": "success", "data":
{"resultType": "vector", "result": [{"metric": {...}, "value": [time, "text"]}]}}``), values written as
Prometheus writes them (shortest decimal, no exponent). Every series carries the target labels a
Prometheus scraping the simulated exporters would add (``instance``: the node's name unless given,
``job``), and
``up`` is 1 for a node that answers and 0 for a dead one, whose other series are absent (stale).

Anything else (functions, operators, range vectors) is answered ``400`` with ``errorType: bad_data``, so
a client can never mistake the simulation for a full Prometheus. ``/api/v1/status/buildinfo`` says it is
a simulation.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterator, Mapping
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
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return format(Decimal(repr(value)), "f")


def evaluate(
    cluster: SimulatedCluster, query: str, at: float, job: str, instances: Mapping[str, str] | None = None
) -> Iterator[dict[str, object]]:
    """The result vector of ``query`` at Unix time ``at`` (module docstring).

    Args:
        cluster, query, at, job: as named; ``job`` is the ``job`` label of every series.
        instances: each node's ``instance`` label by node name (e.g. its ``host:port``, as a Prometheus
            with static targets names it); a node not in it is named by its name.

    Raises:
        BadQuery: the query is not an instant vector selector.
    """
    selector = parse_selector(query)
    when = at - selector.offset
    t = when - cluster.start
    if t < 0:
        return  # before the simulation: nothing was scraped yet
    stamp = round(at, 3)
    # Per sample name: whether it passes the matchers on __name__ (most series fail there, cheaply).
    names: dict[str, bool] = {}
    for node, name in enumerate(cluster.names):
        target = {"instance": (instances or {}).get(name, name), "job": job}
        alive = cluster.alive(node, t)
        up = {"__name__": "up", **target}
        if selector.matches(up):
            yield {"metric": up, "value": [stamp, "1" if alive else "0"]}
        if not alive:
            continue
        for family in cluster.families(node, t):
            for sample in family.samples:
                if not names.setdefault(sample.name, selector.matches_name(sample.name)):
                    continue
                labels = {"__name__": sample.name, **sample.labels, **target}
                if selector.matches(labels):
                    yield {"metric": labels, "value": [stamp, format_value(sample.value)]}
