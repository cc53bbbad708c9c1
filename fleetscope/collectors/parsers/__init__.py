"""Parsers: one module per source family, each recognising its format from content.

The plug-in contract is in :mod:`fleetscope.collectors.parsers.base`. Registration is by listing the class
here.
"""

from __future__ import annotations

from fleetscope.collectors.parsers.base import DocumentParser, FileContext, Line, LineParser
from fleetscope.collectors.parsers.dcgm import DcgmParser
from fleetscope.collectors.parsers.host import HostSoftwareParser
from fleetscope.collectors.parsers.json_document import JsonDocumentParser
from fleetscope.collectors.parsers.kernel import KernelLogParser
from fleetscope.collectors.parsers.libfabric import LibfabricParser
from fleetscope.collectors.parsers.nccl import NcclParser
from fleetscope.collectors.parsers.nccl_tests import NcclTestsParser
from fleetscope.collectors.parsers.nvidia_smi import (
    NvidiaSmiCsvParser,
    NvidiaSmiLinesParser,
    NvidiaSmiQueryParser,
)
from fleetscope.collectors.parsers.prometheus import PrometheusParser
from fleetscope.collectors.parsers.pytorch import PyTorchParser
from fleetscope.collectors.parsers.signatures import SignatureParser
from fleetscope.collectors.parsers.training import IterationTimeParser

#: Parsers that own a whole structured file; the first whose ``sniff`` accepts the file wins.
DOCUMENT_PARSERS: tuple[type[DocumentParser], ...] = (
    PrometheusParser,
    NvidiaSmiQueryParser,
    NvidiaSmiCsvParser,
    JsonDocumentParser,  # last: any JSON document the parsers above do not know
)

#: Parsers that pick messages out of logs; every one sees every candidate line of a log file.
LINE_PARSERS: tuple[type[LineParser], ...] = (
    KernelLogParser,
    NcclParser,
    NcclTestsParser,
    PyTorchParser,
    LibfabricParser,
    NvidiaSmiLinesParser,
    DcgmParser,
    HostSoftwareParser,
    IterationTimeParser,
    SignatureParser,
)

__all__ = [
    "DOCUMENT_PARSERS",
    "LINE_PARSERS",
    "DocumentParser",
    "FileContext",
    "Line",
    "LineParser",
]
