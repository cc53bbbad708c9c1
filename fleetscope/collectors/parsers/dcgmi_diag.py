"""``dcgmi diag`` results in every form dcgmi prints them: the text table and the ``-j`` JSON.

The table (dcgmi/Diag.cpp) has a 27-character name column and a 48-character result column. Per test::

    | PCIe                      | Fail - GPU: 2                                  |   DCGM 2.x / 3.x
    |                           | Skip - GPUs: 5, 6                              |   more results
    | Warning                   | GPU 2 GPU to Host bandwidth is below the       |   a warning,
    |                           | minimum threshold                              |   wrapped at 45 chars
    | memory                    | Fail                                           |   DCGM 4
    |                           | GPU1: Fail                                     |   one row per GPU
    | Warning: GPU1             | GPU 1 had uncorrectable memory errors and row  |
    |                           |  remapping failed.                             |

A result is ``Pass``, ``Fail``, ``Warn``, ``Skip`` or ``Not Run``, for ``All`` GPUs, for the GPUs listed
(``GPU: 0``, ``GPUs: 1, 2, 3``), or (DCGM 4, and the Deployment section) for the test as a whole. A test's
warnings name their GPU in the row name (DCGM 4) or at the start of the message (``GPU 5 had memory
errors ...``). The JSON (``dcgmi diag -j``) holds ``test_categories[].tests[].results[]`` with the GPU
(``gpu_id``, or ``entity_group``/``entity_id`` in DCGM 4), ``status`` and ``warnings`` (``warning`` text and
the DCGM_FR ``error_id``).

Each failed or warning (test, GPU) becomes one ``dcgm_diag`` evidence: ``test`` as printed, ``result``
(``FAIL``/``WARN``), ``message`` (its warnings joined, ``""`` if none) and ``error_id`` (JSON only, else
``None``). ``gpu`` is ``None`` where the result names no GPU. Passing tables give no evidence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import DocumentParser, FileContext, Line, LineParser

#: The empty name cell of a continuation row: the result column's rows that carry no keyword.
CONTINUATION = "|" + " " * 27 + "|"
_RESULT = re.compile(
    r"^(?P<result>Pass|Fail|Warn|Skip|Not Run)\b"
    r"(?:\s*-\s*(?:(?P<all>All)|GPUs?:?\s*(?P<gpus>\d+(?:\s*,\s*\d+)*)))?\s*$"
)
_GPU_RESULT = re.compile(r"^GPU\s?(?P<gpu>\d+):\s*(?P<result>Pass|Fail|Warn|Skip|Not Run)\s*$")
_WARNING_NAME = re.compile(r"^Warning(?::\s*GPU\s?(?P<gpu>\d+))?$")
#: The GPU a DCGM message names ("GPU %u" in dcgmlib/dcgm_errors.h; DCGM 3 also puts it first).
_MESSAGE_GPU = re.compile(r"\bGPU (?P<gpu>\d+)\b")
#: Characters of a message dcgmi prints per row (DATA_INFO_TAG_LEN in dcgmi/Diag.cpp).
_PIECE = 45
_BAD = {"Fail": "FAIL", "Warn": "WARN"}


@dataclass(slots=True)
class _Test:
    """One test's rows, collected until the next test starts."""

    line: Line
    name: str
    overall: str | None = None
    per_gpu: dict[int, tuple[str, Line]] = field(default_factory=dict)
    warnings: list[list[Any]] = field(default_factory=list)  # [gpu or None, text]


class DiagTable:
    """The ``dcgmi diag`` table grammar, fed one row at a time (see the module docstring)."""

    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        self._test: _Test | None = None
        self._in_warning = False

    def row(self, line: Line, body: str) -> list[Evidence]:
        """Read one table row (``body`` starts with ``|``); return evidence of a test that ended."""
        raw = body.strip().strip("|").split("|")
        if len(raw) != 2:
            return []
        name, info = raw[0].strip(), raw[1].strip()
        if not name:
            return self._continuation(line, info, _piece(raw[1]))
        warning = _WARNING_NAME.match(name)
        if warning is not None:
            if self._test is not None:
                named = int(warning["gpu"]) if warning["gpu"] else None
                self._test.warnings.append([named, _piece(raw[1])])
                self._in_warning = True
            return []
        if name.startswith("Info"):
            self._in_warning = False
            return []
        done = self.finish()
        self._in_warning = False
        m = _RESULT.match(info)
        if m is None:
            return done  # a metadata row (DCGM Version ...)
        self._test = _Test(line=line, name=name)
        self._result(line, m)
        return done

    def _continuation(self, line: Line, info: str, piece: str) -> list[Evidence]:
        if self._test is None or not info:
            return []
        m = _RESULT.match(info)
        if m is not None:
            self._in_warning = False
            self._result(line, m)
            return []
        g = _GPU_RESULT.match(info)
        if g is not None:
            self._in_warning = False
            self._test.per_gpu[int(g["gpu"])] = (g["result"], line)
            return []
        if self._in_warning and self._test.warnings:
            # A wrapped message: dcgmi cuts it every 45 characters, in the middle of a word too, so the
            # pieces join as they are (a space at a cut is inside the piece).
            self._test.warnings[-1][1] += piece
        return []

    def _result(self, line: Line, m: re.Match[str]) -> None:
        assert self._test is not None
        if m["gpus"]:
            for gpu in re.split(r"\s*,\s*", m["gpus"]):
                self._test.per_gpu[int(gpu)] = (m["result"], line)
        else:
            self._test.overall = m["result"]

    def finish(self) -> list[Evidence]:
        """Evidence of the test being read, if it failed or warned."""
        test, self._test = self._test, None
        if test is None:
            return []
        messages: dict[int | None, list[str]] = {}
        for gpu, text in test.warnings:
            text = " ".join(text.split())
            if gpu is None and (m := _MESSAGE_GPU.search(text)):
                gpu = int(m["gpu"])  # named in the (whole, unwrapped) message
            messages.setdefault(gpu, []).append(text)
        out = []
        bad_gpus: dict[int | None, tuple[str, Line]] = {
            g: (_BAD[r], ln) for g, (r, ln) in test.per_gpu.items() if r in _BAD
        }
        if not bad_gpus and test.overall in _BAD:
            # A whole-test result: the GPUs its warnings name, else the node.
            whole = (_BAD[test.overall], test.line)
            bad_gpus = {g: whole for g in messages if g is not None} or {None: whole}
        for gpu, (result, line) in sorted(bad_gpus.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
            text = messages.get(gpu) or messages.get(None) or []
            out.append(_evidence(self.ctx, line, test.name, result, gpu, "; ".join(text), None))
        return out


def _piece(cell: str) -> str:
    """A message cell's text as dcgmi wrote it: one space of margin off, padding past a full piece off."""
    text = cell[1:] if cell.startswith(" ") else cell
    return text[:_PIECE] if not text[_PIECE:].strip() else text


def _evidence(
    ctx: FileContext, line: Line, test: str, result: str, gpu: int | None, message: str, error_id: int | None
) -> Evidence:
    return ctx.evidence(
        line,
        "dcgm_diag",
        gpu=gpu,
        severity="error" if result == "FAIL" else "warning",
        attrs={"test": test, "result": result, "message": message[:500], "error_id": error_id},
    )


class DcgmiDiagParser(LineParser):
    """``dcgmi diag`` text tables, also where they sit inside a larger log."""

    name = "dcgmi-diag"
    keywords = ("| Pass", "| Fail", "| Warn", "| Skip", ": Fail", "Fail - GPU", "Warn - GPU", CONTINUATION)

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        self._table = DiagTable(ctx)

    def feed(self, line: Line) -> Iterable[Evidence]:
        if "|" not in line.text:
            return ()
        body = line.pre.body
        start = body.find("|")
        # The table may follow a logger's own tag ("health-check: | PCIe | ...").
        if start < 0 or not (body[:start].strip() == "" or body[:start].rstrip().endswith(":")):
            return ()
        return self._table.row(line, body[start:])

    def finish(self) -> Iterable[Evidence]:
        return self._table.finish()


class DcgmiDiagJsonParser(DocumentParser):
    """``dcgmi diag -j`` output.

    Raises (from :meth:`parse`):
        ValueError: The file is not valid JSON (the reader notes the file as unparsable).
    """

    name = "dcgmi-diag-json"

    @classmethod
    def sniff(cls, head: str) -> bool:
        return head.lstrip().startswith("{") and '"test_categories"' in head

    def parse(self, lines: Iterable[Line]) -> Iterator[Evidence]:
        first: Line | None = None
        text = []
        for line in lines:
            first = first or line
            text.append(line.text)
        if first is None:
            return
        doc = json.loads("\n".join(text))
        for category in _find_categories(doc):
            for test in category.get("tests") or []:
                if not isinstance(test, dict):
                    continue
                for result in test.get("results") or []:
                    if isinstance(result, dict):
                        yield from self._result(first, str(test.get("name", "")), result)

    def _result(self, line: Line, test: str, result: dict[str, Any]) -> Iterator[Evidence]:
        status = str(result.get("status", "")).capitalize()
        if status not in _BAD:
            return
        gpu_text = str(result.get("gpu_id", result.get("entity_id")))
        is_gpu = result.get("entity_group", "GPU") == "GPU"
        gpu = int(gpu_text) if gpu_text.isdigit() and is_gpu else None
        warnings = [w if isinstance(w, dict) else {"warning": w} for w in result.get("warnings") or []]
        texts = [str(w.get("warning", "")) for w in warnings]
        named = _MESSAGE_GPU.search(texts[0]) if texts and gpu is None else None
        gpu = int(named["gpu"]) if named else gpu
        codes = [int(w["error_id"]) for w in warnings if isinstance(w.get("error_id"), int)]
        message = "; ".join(texts)
        yield _evidence(self.ctx, line, test, _BAD[status], gpu, message, codes[0] if codes else None)


def _find_categories(doc: Any) -> list[dict[str, Any]]:
    """``test_categories`` wherever the DCGM version nests it (``"DCGM GPU Diagnostic"`` and others)."""
    if isinstance(doc, dict):
        if isinstance(doc.get("test_categories"), list):
            return [c for c in doc["test_categories"] if isinstance(c, dict)]
        return [c for v in doc.values() for c in _find_categories(v)]
    return []
