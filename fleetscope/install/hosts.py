"""Which hosts to install on: host names, Slurm-style ranges and hosts files.

A host is written ``[USER@]NAME[:SSH_PORT]``; commas outside brackets separate hosts, as in the
compressed lists ``sinfo`` prints. ``NAME`` may hold bracketed ranges in Slurm's hostlist form
(``node-[01-64]``, ``gpu[1-3,7]``, ``rack[1-2]-node[01-08]``); a range keeps the zero padding of its
lower bound, as Slurm's ``scontrol show hostnames`` does. An IPv6 literal is written in brackets
(``[fd00::1]:22``) and is never read as a range.

A hosts file has one host (or range) per line, ``#`` starts a comment, and ``KEY=VALUE`` words after
the host override the command's settings for that line: ``prefix``, ``exporter_port``, ``python``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path


class HostSpecError(ValueError):
    """A host, range or hosts-file line that cannot be read; the message names it."""


#: Settings a hosts-file line may override, and their types.
HOST_OVERRIDES = {"prefix": str, "exporter_port": int, "python": str}

_RANGE = re.compile(r"\[([0-9,\-]+)\]")
_TOP_LEVEL_COMMA = re.compile(r",(?![^\[]*\])")


@dataclass(frozen=True)
class Host:
    """One machine to install on.

    Attributes:
        name: DNS name or address; also where ``/metrics`` is checked and what the targets file lists.
        ssh_port: SSH port; None for the SSH client's default (22, or the ssh_config entry).
        user: login name; None for the current user or the ssh_config entry.
        overrides: per-host settings from a hosts file (``prefix``, ``exporter_port``, ``python``).
    """

    name: str
    ssh_port: int | None = None
    user: str | None = None
    overrides: tuple[tuple[str, str | int], ...] = ()

    @property
    def label(self) -> str:
        """How the host is shown: the name, with the SSH port when one was given."""
        return self.name if self.ssh_port is None else f"{_bracket(self.name)}:{self.ssh_port}"


def check_prefix(prefix: str) -> str:
    """An install root: absolute, and not ``/`` (uninstall deletes it whole).

    Raises:
        HostSpecError: a relative path or the root folder.
    """
    if not prefix.startswith("/") or not prefix.strip("/"):
        raise HostSpecError(f"the install prefix must be an absolute folder other than /: {prefix!r}")
    return prefix.rstrip("/")


def _bracket(name: str) -> str:
    return f"[{name}]" if ":" in name else name


def expand_range(name: str) -> list[str]:
    """All names a Slurm-style hostlist expression stands for, in order.

    Args:
        name: e.g. ``node-[01-03,07]`` or ``r[1-2]n[1-2]``.

    Returns:
        e.g. ``["node-01", "node-02", "node-03", "node-07"]``.

    Raises:
        HostSpecError: an empty, reversed or malformed range, or an unclosed bracket.
    """
    parts = _RANGE.split(name)
    literals, ranges = parts[0::2], parts[1::2]
    if any(c in "[]" for c in "".join(literals)):
        raise HostSpecError(f"malformed host range {name!r} (expected e.g. node-[01-64])")
    choices: list[list[str]] = []
    for body in ranges:
        values: list[str] = []
        for item in body.split(","):
            low, dash, high = item.partition("-")
            if not low.isdigit() or (dash and not high.isdigit()):
                raise HostSpecError(f"malformed host range [{body}] in {name!r}")
            if not dash:
                values.append(low)
                continue
            if int(high) < int(low):
                raise HostSpecError(f"reversed host range [{item}] in {name!r}")
            width = len(low) if low.startswith("0") else 0
            values.extend(str(n).zfill(width) for n in range(int(low), int(high) + 1))
        choices.append(values)
    names = []
    for picked in itertools.product(*choices):
        pieces = [literals[0]]
        for value, literal in zip(picked, literals[1:], strict=True):
            pieces += [value, literal]
        names.append("".join(pieces))
    return names


def parse_host(spec: str, overrides: tuple[tuple[str, str | int], ...] = ()) -> list[Host]:
    """Read ``[USER@]NAME[:SSH_PORT]``, expanding ranges in ``NAME``; commas outside brackets separate
    hosts, as in Slurm's compressed lists (``sinfo -h -o %N`` prints ``gpu-[01-08],login1``).

    Raises:
        HostSpecError: an empty name, a bad port or a bad range.
    """
    pieces = _TOP_LEVEL_COMMA.split(spec)
    if len(pieces) > 1:
        return [host for piece in pieces for host in parse_host(piece, overrides)]
    user, at, rest = spec.rpartition("@")
    if at and not user:
        raise HostSpecError(f"empty user name in host {spec!r}")
    port_text = ""
    if rest.startswith("[") and ("]:" in rest or rest.endswith("]")) and ":" in rest.split("]")[0]:
        # An IPv6 literal: [fd00::1] or [fd00::1]:2222.
        address, _, after = rest[1:].partition("]")
        names = [address]
        port_text = after.removeprefix(":") if after.startswith(":") else after
        if after and not after.startswith(":"):
            raise HostSpecError(f"malformed host {spec!r}")
    else:
        name, colon, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
        if colon and not name:
            raise HostSpecError(f"empty host name in {spec!r}")
        names = expand_range(name)
    if not names or not all(names):
        raise HostSpecError(f"empty host name in {spec!r}")
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise HostSpecError(f"bad SSH port {port_text!r} in host {spec!r}")
        port = int(port_text)
    return [Host(n, port, user or None, overrides) for n in names]


def read_hosts_file(path: Path) -> list[Host]:
    """Hosts listed in a file: one host or range per line, optional ``KEY=VALUE`` overrides after it.

    Raises:
        HostSpecError: an unreadable file, an unknown key or a bad value; the message names the line.
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise HostSpecError(f"cannot read hosts file {path}: {exc}") from None
    hosts: list[Host] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        overrides: list[tuple[str, str | int]] = []
        for word in words[1:]:
            key, eq, value = word.partition("=")
            if not eq or key not in HOST_OVERRIDES or not value:
                known = ", ".join(HOST_OVERRIDES)
                raise HostSpecError(f"{path}:{number}: expected KEY=VALUE with KEY one of {known}: {word!r}")
            if HOST_OVERRIDES[key] is int:
                if not value.isdigit() or not 0 < int(value) < 65536:
                    raise HostSpecError(f"{path}:{number}: {key} must be a port number: {value!r}")
                overrides.append((key, int(value)))
            elif key == "prefix":
                try:
                    overrides.append((key, check_prefix(value)))
                except HostSpecError as exc:
                    raise HostSpecError(f"{path}:{number}: {exc}") from None
            else:
                overrides.append((key, value))
        try:
            hosts += parse_host(words[0], tuple(overrides))
        except HostSpecError as exc:
            raise HostSpecError(f"{path}:{number}: {exc}") from None
    return hosts


def collect_hosts(specs: list[str], files: list[Path]) -> list[Host]:
    """Every host named on the command line and in hosts files, first mention kept, duplicates dropped.

    Raises:
        HostSpecError: a bad spec or file, or no host at all.
    """
    hosts: list[Host] = []
    for spec in specs:
        hosts += parse_host(spec)
    for path in files:
        hosts += read_hosts_file(path)
    unique: dict[tuple[str, int | None], Host] = {}
    for host in hosts:
        unique.setdefault((host.name, host.ssh_port), host)
    if not unique:
        raise HostSpecError("no hosts given (name them, give a range such as node-[01-64], or --hosts-file)")
    return list(unique.values())
