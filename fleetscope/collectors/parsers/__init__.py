"""Parsers: one module per source family, each recognising its format from content.

The plug-in contract is in :mod:`fleetscope.collectors.parsers.base`. Registration is by listing the class
here.
"""

from __future__ import annotations

from fleetscope.collectors.parsers.base import DocumentParser, FileContext, Line, LineParser
from fleetscope.collectors.parsers.connections import ConnectionStateParser
from fleetscope.collectors.parsers.dcgm import DcgmParser
from fleetscope.collectors.parsers.dcgmi_diag import DcgmiDiagJsonParser, DcgmiDiagParser
from fleetscope.collectors.parsers.efa import EfaParser
from fleetscope.collectors.parsers.host import HostSoftwareParser
from fleetscope.collectors.parsers.host_address import HostAddressParser
from fleetscope.collectors.parsers.json_document import JsonDocumentParser
from fleetscope.collectors.parsers.kernel import KernelLogParser
from fleetscope.collectors.parsers.libfabric import LibfabricParser
from fleetscope.collectors.parsers.nccl import NcclParser
from fleetscope.collectors.parsers.nccl_quoted import NcclQuotedErrorParser
from fleetscope.collectors.parsers.nccl_tests import NcclTestsParser
from fleetscope.collectors.parsers.nccl_tests_runs import NcclTestsRunParser, NcclTestsTableParser
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
    DcgmiDiagJsonParser,
    NcclTestsTableParser,
    JsonDocumentParser,  # last: any JSON document the parsers above do not know
)

#: Parsers that pick messages out of logs; every one sees every candidate line of a log file.
LINE_PARSERS: tuple[type[LineParser], ...] = (
    KernelLogParser,
    NcclParser,
    NcclQuotedErrorParser,
    NcclTestsParser,
    NcclTestsRunParser,
    PyTorchParser,
    LibfabricParser,
    EfaParser,
    NvidiaSmiLinesParser,
    DcgmParser,
    DcgmiDiagParser,
    HostSoftwareParser,
    IterationTimeParser,
    SignatureParser,
    ConnectionStateParser,
    HostAddressParser,
)

__all__ = [
    "DOCUMENT_PARSERS",
    "LINE_PARSERS",
    "DocumentParser",
    "FileContext",
    "Line",
    "LineParser",
]
