"""A JSON document that no other parser knows: metadata, configuration or a report, not a log.

A pretty-printed JSON value (an object or array over several lines: a job's ``config.json``, a tool's
``results.json``, a case's notes) holds quoted text, not events; reading its string values as log lines
would turn a description of a fault into evidence of one. Such a file is owned here and yields nothing,
so it counts as a file read without evidence. JSON *lines* (``journalctl -o json``, structured loggers:
one complete value per line) are logs and are not owned here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import DocumentParser, Line

#: How a JSON object or array of objects, arrays or strings opens (``{"key"``, ``[{``, ``["``, or the bracket
#: alone on its line); a kernel log's ``[ 12.3]`` stamp does not.
_OPENS = re.compile(r'\s*(?:\{\s*(?:"|$)|\[\s*(?:[\[{"]|$))')


class JsonDocumentParser(DocumentParser):
    """Multi-line JSON documents, which hold no log lines."""

    name = "json document"

    @classmethod
    def sniff(cls, head: str) -> bool:
        text = head.lstrip()
        first = text.split("\n", 1)[0]
        if not _OPENS.match(first):
            return False
        try:
            json.loads(first)
        except ValueError:
            return True  # the value goes on past its first line: a document, not JSON lines
        return False

    def parse(self, lines: Iterable[Line]) -> Iterator[Evidence]:
        for _ in lines:
            pass
        return iter(())
