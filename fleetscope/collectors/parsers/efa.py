"""The EFA provider's abort banner, errors that name the remote peer, and the locked-memory limit.

* Abort banner (libfabric ``prov/efa``, ``efa_base_ep_write_eq_error`` and its older ``rxr`` twin), printed
  to stderr when the provider cannot report an error to the application::

      Libfabric EFA provider has encountered an internal error:

      Libfabric error: (-12) Cannot allocate memory
      EFA internal error: (4105) Out of memory

      Your application will now abort().

  (older releases spell it "encounterd"). The three lines become one ``efa_abort`` evidence with the
  libfabric error (``fi_errno``, positive) and the EFA provider error (``efa_prov_errno``, the table of
  ``libfabric_errors.yaml``).
* Errors that name the peer (``efa_rdm_txe_handle_error`` / ``rxe`` since libfabric 1.20): ``... My EFA
  addr: fi_addr_efa://[fe80::13:..]:0:1072483550 My host id: i-0db7... Peer EFA addr: fi_addr_efa://..
  Peer host id: i-0ce6...``. Each becomes ``transport_peer_error`` evidence naming the peer (its host
  id where printed, else its EFA address), whether the message says the peer went away (``gone``:
  unresponsive, unreachable, reset by the remote), and the reporting side's own host id, which maps host
  ids to the bundle's node folders.
* The locked-memory limit, which EFA and verbs need unlimited to register GPU and host buffers:
  ``ulimit -a``'s ``max locked memory (kbytes, -l) 64``, ``/proc/<pid>/limits``'s ``Max locked memory
  65536 65536 bytes``, and libibverbs' warning ``RLIMIT_MEMLOCK is 65536 bytes``. Each becomes
  ``memlock_limit`` evidence (``limit_bytes``: ``None`` for unlimited).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import FileContext, Line, LineParser

_BANNER = re.compile(r"EFA provider has encounte?re?d an internal error")
_FI_ERROR = re.compile(r"Libfabric error: \((?P<code>-?\d+)\) ?(?P<text>.*)")
_EFA_ERROR = re.compile(r"EFA internal error: \((?P<code>-?\d+)\) ?(?P<text>.*)")
_PEER = re.compile(
    r"(?:My EFA addr: (?P<self_addr>\S+) )?(?:My host id: (?P<self_id>\S+) )?"
    r"Peer EFA addr: (?P<peer_addr>\S+)(?: Peer host id: (?P<peer_id>[^\s()]+))?"
)
#: A message that says the remote side went away or cannot be reached (EFA completion statuses 8, 13,
#: 15 and provider errors "Unresponsive receiver ..." of prov/efa/src/efa_errno.h).
_PEER_GONE = re.compile(
    r"Unresponsive (?:receiver|remote)|Unreachable remote|remote (?:is )?unreachable|impaired"
    r"|reset by remote peer",
    re.IGNORECASE,
)
#: libfabric's ``<warn> err: 113, message: <text> My EFA addr: ...``: the text alone.
_TEXT = re.compile(r"\bmessage: (?P<text>.*?)(?: My EFA addr:| Peer EFA addr:|$)")
_ULIMIT_A = re.compile(r"max locked memory\s+\(kbytes, -l\)\s+(?P<value>\d+|unlimited)")
_PROC_LIMITS = re.compile(r"Max locked memory\s+(?P<value>\d+|unlimited)\s+(?:\d+|unlimited)\s+bytes")
_IBV_WARNING = re.compile(r"RLIMIT_MEMLOCK is (?P<value>\d+) bytes")
_ULIMIT_L = re.compile(r"ulimit -l\s*[:=]?\s*(?P<value>\d+|unlimited)\s*$")


class EfaParser(LineParser):
    """EFA abort banners, errors naming the remote peer, and locked-memory limits."""

    name = "efa"
    keywords = (
        "provider has encountered an internal error",
        "provider has encounterd an internal error",
        "Libfabric error: (",
        "EFA internal error: (",
        "Peer EFA addr:",
        "max locked memory",
        "Max locked memory",
        "RLIMIT_MEMLOCK",
        "ulimit -l",
    )

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        self._abort: Evidence | None = None

    def feed(self, line: Line) -> Iterable[Evidence]:
        text = line.text
        out: list[Evidence] = []
        if _BANNER.search(text):
            out.extend(self._flush())
            self._abort = self.ctx.evidence(line, "efa_abort", severity="error", layer="network")
            return out
        m = _FI_ERROR.search(text) or _EFA_ERROR.search(text)
        if m is not None:
            field = "fi_errno" if m.re is _FI_ERROR else "efa_prov_errno"
            if self._abort is None or field in self._abort.attrs:
                # A banner whose first line was lost (or a second error): the code line stands alone.
                out.extend(self._flush())
                self._abort = self.ctx.evidence(line, "efa_abort", severity="error", layer="network")
            self._abort.attrs[field] = abs(int(m["code"]))
            self._abort.attrs[field.replace("errno", "error")] = m["text"].strip()
            if "efa_prov_errno" in self._abort.attrs and "fi_errno" in self._abort.attrs:
                out.extend(self._flush())
            return out
        m = _PEER.search(text)
        if m is not None:
            attrs: dict[str, Any] = {
                "peer": m["peer_id"] or m["peer_addr"],
                "gone": _PEER_GONE.search(text) is not None,
                "peer_addr": m["peer_addr"],
                "self_id": m["self_id"],
                "message": _message(line.pre.body),
            }
            out.append(
                self.ctx.evidence(
                    line, "transport_peer_error", severity="error", layer="network", attrs=attrs
                )
            )
            return out
        limit = self._memlock(text)
        if limit is not None:
            out.append(
                self.ctx.evidence(
                    line,
                    "memlock_limit",
                    severity="info",
                    attrs={"limit_bytes": None if limit < 0 else limit},
                )
            )
        return out

    def finish(self) -> Iterable[Evidence]:
        return self._flush()

    def _flush(self) -> list[Evidence]:
        done, self._abort = self._abort, None
        return [done] if done is not None else []

    @staticmethod
    def _memlock(text: str) -> int | None:
        """The locked-memory limit a line states, in bytes; -1 for unlimited; ``None`` if none."""
        for pattern, unit in ((_ULIMIT_A, 1024), (_PROC_LIMITS, 1), (_IBV_WARNING, 1), (_ULIMIT_L, 1024)):
            m = pattern.search(text)
            if m is not None:
                value = m["value"]
                return -1 if value == "unlimited" else int(value) * unit
        return None


def _message(body: str) -> str:
    m = _TEXT.search(body)
    return (m["text"] if m else body).strip()[:300]
