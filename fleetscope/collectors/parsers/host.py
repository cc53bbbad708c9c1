"""Host software state: package history, kernel and module listings.

* apt history (``/var/log/apt/history.log``): ``Start-Date:`` / ``Commandline:`` / ``Upgrade:`` blocks, and
  dpkg.log lines (``2021-06-04 06:41:09 upgrade pkg:amd64 old new``).
* ``uname -a`` (``Linux host 5.15.0-91-generic #101-Ubuntu ...``), module files under
  ``/lib/modules/<release>/`` (``find``/``ls`` output), ``dkms status`` and ``lsmod`` rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fleetscope.collectors.evidence import Evidence
from fleetscope.collectors.parsers.base import FileContext, Line, LineParser
from fleetscope.collectors.timestamps import split_timestamp

#: Packages whose change can break the GPU stack.
_GPU_STACK = re.compile(
    r"nvidia|cuda|libnccl|datacenter-gpu-manager|dcgm|linux-(?:image|headers|modules)|dkms"
)
_APT_FIELD = re.compile(
    r"^(?P<field>Start-Date|End-Date|Commandline|Requested-By|Upgrade|Install|Remove|Purge|Downgrade"
    r"|Reinstall): (?P<value>.*)$"
)
_APT_PACKAGE = re.compile(r"(?P<pkg>[^\s,()]+) \((?P<versions>[^)]*)\)")
_DPKG = re.compile(
    r"^(?:\S+ \S+ )?(?P<action>upgrade|install|remove|purge) (?P<pkg>\S+) (?P<old>\S+) (?P<new>\S+)$"
)
_UNAME = re.compile(r"^Linux (?P<host>\S+) (?P<release>\d+\.\d+\.\d+\S*) #")
_MODULE_FILE = re.compile(r"/lib/modules/(?P<release>[^/\s]+)/\S*?(?P<module>nvidia[\w-]*)\.ko(?:\.\w+)?\b")
_DKMS = re.compile(
    r"^(?P<module>nvidia[\w-]*)[,/] ?(?P<version>[\d.]+),? (?P<release>\d+\.\d+\.\d+\S*?),? "
    r"(?P<arch>\w+): (?P<state>\w+)"
)
_LSMOD = re.compile(r"^(?P<module>nvidia(?:_\w+)?)\s+(?P<size>\d+)\s+(?P<used>\d+)")


class HostSoftwareParser(LineParser):
    """Package changes, running kernel and NVIDIA module presence."""

    name = "host"
    keywords = (
        "Start-Date:",
        "Commandline:",
        "Requested-By:",
        "Upgrade:",
        "Install:",
        "Remove:",
        "Purge:",
        "Downgrade:",
        "Reinstall:",
        "End-Date:",
        ":amd64 ",  # dpkg.log rows name the package with its architecture
        ":arm64 ",
        "Linux ",
        "/lib/modules/",
        "nvidia,",
        "nvidia/",
        "nvidia  ",  # an lsmod row: the name padded with spaces
    )

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        self._start: Line | None = None
        self._commandline = ""

    def feed(self, line: Line) -> Iterable[Evidence]:
        body = line.pre.body.strip()
        m = _APT_FIELD.match(body)
        if m:
            return self._apt(line, m["field"], m["value"])
        m = _DPKG.match(body)
        if m and _GPU_STACK.search(m["pkg"]):
            return (self._change(line, m["action"], m["pkg"], m["old"], m["new"], ""),)
        m = _UNAME.match(body)
        if m:
            return (
                self.ctx.evidence(line, "kernel_release", attrs={"release": m["release"], "running": True}),
            )
        m = _MODULE_FILE.search(body)
        if m:
            return (
                self.ctx.evidence(
                    line, "module_file", attrs={"release": m["release"], "module": m["module"]}
                ),
            )
        m = _DKMS.match(body)
        if m:
            return (self.ctx.evidence(line, "dkms_module", attrs=m.groupdict()),)
        m = _LSMOD.match(body)
        if m:
            return (self.ctx.evidence(line, "module_loaded", attrs={"module": m["module"]}),)
        return ()

    def _apt(self, line: Line, field: str, value: str) -> Iterable[Evidence]:
        if field == "Start-Date":
            self._start = line
            self._commandline = ""
            return ()
        if field in ("Commandline", "Requested-By"):
            self._commandline = (self._commandline + " " + value).strip()
            return ()
        if field == "End-Date":
            self._start = None
            return ()
        out = []
        for p in _APT_PACKAGE.finditer(value):
            if not _GPU_STACK.search(p["pkg"]):
                continue
            versions = [v.strip() for v in p["versions"].split(",")]
            old, new = [*versions, ""][:2] if len(versions) > 1 else ("", versions[0])
            out.append(self._change(line, field.lower(), p["pkg"], old, new, self._commandline))
        return out

    def _change(self, line: Line, action: str, pkg: str, old: str, new: str, commandline: str) -> Evidence:
        e = self.ctx.evidence(
            line,
            "package_change",
            severity="warning",
            layer="host_software",
            attrs={
                "action": action,
                "package": pkg,
                "old": old,
                "new": new,
                "commandline": commandline,
                "unattended": "unattended-upgrade" in commandline,
            },
        )
        if e.time is None and self._start is not None:
            stamp, _ = split_timestamp(self._start.pre.body.removeprefix("Start-Date:").strip())
            if stamp is not None:
                e.time, e.time_raw = stamp.time, stamp.raw
        return e
