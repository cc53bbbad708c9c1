"""NCCL's own error message where PyTorch (or another caller) quotes it, without NCCL's log header.

An NCCL error raised through PyTorch reads (torch ``ProcessGroupNCCL`` / ``NCCLUtils``)::

    torch.distributed.DistBackendError: NCCL error in: .../ProcessGroupNCCL.cpp:1970, invalid usage ...
    ncclInvalidUsage: This usually reflects invalid usage of NCCL library.
    Last error:
    Duplicate GPU detected : rank 3 and rank 0 both on CUDA device 1b000

The result code says only which family failed; the line after ``Last error:`` is the text of NCCL's last
``WARN`` (``ncclGetLastError``), which names the fault. Its shapes are the ``messages`` of
``nccl_errors.yaml``: a line holding one of their ``keywords``, or the rest of a ``Last error: <text>``
line, becomes the same ``nccl_warn`` evidence as an NCCL ``WARN`` line (``attrs["quoted"]`` set), on the
node of the file it came from, so the transport detector classifies both alike. Lines that carry NCCL's
own header are the :mod:`~fleetscope.collectors.parsers.nccl` parser's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fleetscope.collectors import knowledge
from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import Line, LineParser

_LAST_ERROR = "Last error:"
#: NCCL's own log lines, read by the nccl parser.
_NCCL_HEADER = re.compile(r"\bNCCL (?:WARN|INFO|ERROR|TRACE|ABORT)\b")


def _keywords() -> tuple[str, ...]:
    words = {_LAST_ERROR}
    for _, entry in knowledge.nccl_messages():
        words.update(str(k) for k in entry.get("keywords") or ())
    return tuple(sorted(words))


class NcclQuotedErrorParser(LineParser):
    """NCCL error texts quoted without NCCL's header (``Last error:`` and the line after it)."""

    name = "nccl-quoted"
    keywords = _keywords()

    def feed(self, line: Line) -> Iterable[Evidence]:
        if _NCCL_HEADER.search(line.text):
            return ()
        body = line.pre.body.strip()
        if _LAST_ERROR in body:
            body = body.split(_LAST_ERROR, 1)[1].strip()
            if not body:
                return ()  # the text follows on the next line, which a keyword brings here
        if not any(pattern.search(body) for pattern, _ in knowledge.nccl_messages()):
            return ()
        return (
            self.ctx.evidence(
                line, "nccl_warn", severity="warning", attrs={"message": body[:500], "quoted": True}
            ),
        )
