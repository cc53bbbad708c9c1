"""Training progress lines: per-iteration times, as trainers print them.

Recognised: ``Iteration took 32.709 s`` (Caffe/MXNet style), Megatron-LM's ``elapsed time per iteration
(ms): 1234.5``, ``step time: 1.23 s`` / ``step_time=1.23s`` and ``iter time 1.23 s``. The series is
not kept: a running level (median of the first values) and the jumps away from it are, so a 2 GB log
costs constant memory. A zero (or unreadable) time measures nothing and is skipped: it never sets the level.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.knowledge import scoring
from fleetscope.collectors.parsers.base import FileContext, Line, LineParser

_ITER = re.compile(
    r"(?:[Ii]teration took (?P<s1>[\d.]+) ?s\b"
    r"|elapsed time per iteration \(ms\): (?P<ms>[\d.]+)"
    r"|step[_ ]time[:=] ?(?P<s2>[\d.]+) ?s\b"
    r"|iter(?:ation)? time[:=]? (?P<s3>[\d.]+) ?s\b)"
)
#: Values that set the baseline; a jump is a value at least ``training.jump_ratio`` (scoring.yaml) times the
#: current level.
_BASELINE_SAMPLES = 5
_MAX_JUMPS = 20


class IterationTimeParser(LineParser):
    """Iteration times, reduced to the baseline and its jumps."""

    name = "training"
    keywords = (
        "teration took",
        "elapsed time per iteration",
        "step time",
        "step_time",
        "iter time",
        "iteration time",
    )

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        self._first: list[float] = []
        self._level: float | None = None
        self._jumps = 0

    def feed(self, line: Line) -> Iterable[Evidence]:
        # The whole text, not ``line.pre.body``: no launcher prefix or timestamp holds these phrases, and
        # a training log has one such line per step, so the prefix split waits for evidence.
        m = _ITER.search(line.text)
        if m is None:
            return ()
        try:
            seconds = float(m["ms"]) / 1000 if m["ms"] else float(m["s1"] or m["s2"] or m["s3"])
        except ValueError:  # "1.2.3": the pattern admits dots anywhere
            return ()
        if not 0 < seconds < float("inf"):
            return ()
        if self._level is None:
            self._first.append(seconds)
            if len(self._first) == _BASELINE_SAMPLES:
                self._level = statistics.median(self._first)
            return ()
        if seconds >= self._level * scoring("training.jump_ratio") and self._jumps < _MAX_JUMPS:
            before = self._level
            self._level = seconds
            self._jumps += 1
            return (
                self.ctx.evidence(
                    line,
                    "iteration_time_jump",
                    severity="warning",
                    attrs={"before_s": before, "after_s": seconds, "ratio": seconds / before},
                ),
            )
        return ()
