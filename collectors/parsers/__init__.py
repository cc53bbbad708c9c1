"""Parsers: one module per source family, each recognising its format from content.

The plug-in contract is in :mod:`collectors.parsers.base`. Registration is by listing the class here.
"""

from __future__ import annotations

from collectors.parsers.base import DocumentParser, FileContext, Line, LineParser
from collectors.parsers.dcgm import DcgmParser
from collectors.parsers.host import HostSoftwareParser
from collectors.parsers.kernel import KernelLogParser
from collectors.parsers.libfabric import LibfabricParser
from collectors.parsers.nccl import NcclParser
from collectors.parsers.nccl_tests import NcclTestsParser
from collectors.parsers.nvidia_smi import NvidiaSmiCsvParser, NvidiaSmiLinesParser, NvidiaSmiQueryParser
from collectors.parsers.prometheus import PrometheusParser
from collectors.parsers.pytorch import PyTorchParser
from collectors.parsers.signatures import SignatureParser
from collectors.parsers.training import IterationTimeParser

#: Parsers that own a whole structured file; the first whose ``sniff`` accepts the file wins.
DOCUMENT_PARSERS: tuple[type[DocumentParser], ...] = (
    PrometheusParser,
    NvidiaSmiQueryParser,
    NvidiaSmiCsvParser,
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
