"""Launcher prefixes and timestamps in front of a log line.

Launchers tag each line of a rank's output before the program's own text:

=====================  ====================================  =====================
launcher               example                               gives
=====================  ====================================  =====================
Open MPI ``--tag-output``  ``[1,13]<stdout>:``               rank 13
torchrun ``--tee``     ``[default0]:``                       local rank 0
torch.distributed      ``[rank3]:``                          rank 3
Slurm ``srun --label`` ``  3: ``                             rank 3
pdsh / DeepSpeed       ``node-02: ``                         host node-02
=====================  ====================================  =====================

Prefixes and timestamps nest in either order (``[2024-11-06 21:47:38] [rank3]: ...`` or
``[1,13]<stderr>:2024-... ``), so :func:`split_prefixes` peels them until neither is left.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleetscope.collectors.timestamps import Stamp, split_timestamp

_LAUNCHER = re.compile(
    r"\s*(?:\[\d+,(?P<mpi>\d+)\]<std(?:out|err)>:"
    r"|\[default(?P<local>\d+)\]:"
    r"|\[rank(?P<rank>\d+)\]:"
    r"|(?P<srun>\d{1,6}): "
    r"|(?P<host>[a-z0-9][a-z0-9-]*\d[a-z0-9.-]*): )\s?"
)


@dataclass(frozen=True, slots=True)
class Prefixes:
    """What precedes the program's text on one line.

    Attributes:
        stamp: The timestamp, or ``None``.
        rank: The rank (or local rank) the launcher tagged, or ``None``.
        host: A host named by the launcher or by syslog, or ``None``.
        body: The rest of the line.
    """

    stamp: Stamp | None
    rank: int | None
    host: str | None
    body: str


def split_prefixes(line: str) -> Prefixes:
    """Peel launcher prefixes and a timestamp off ``line``.

    Args:
        line: One log line without its newline.

    Returns:
        The prefixes found and the remaining body.
    """
    stamp: Stamp | None = None
    rank: int | None = None
    host: str | None = None
    body = line
    for _ in range(4):
        m = _LAUNCHER.match(body)
        if m:
            value = m["mpi"] or m["local"] or m["rank"] or m["srun"]
            if value is not None and rank is None:
                rank = int(value)
            if m["host"] and host is None:
                host = m["host"]
            body = body[m.end() :]
            continue
        if stamp is None:
            found, rest = split_timestamp(body)
            if found is not None:
                stamp = found
                host = host or found.host
                body = rest
                continue
        break
    return Prefixes(stamp=stamp, rank=rank, host=host, body=body)
