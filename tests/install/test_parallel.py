"""The bound on hosts worked on at once, against real TCP servers that accept and never answer.

Each host is a listening socket on 127.0.0.1 that takes the connection and stays silent, so every SSH
handshake lasts until the connect timeout; without the bound all hosts would wait at once.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from fleetscope.install import Host, InstallSettings, Status, uninstall_hosts


@pytest.fixture
def silent_servers() -> Iterator[list[int]]:
    sockets = []
    for _ in range(6):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        sockets.append(s)
    try:
        yield [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_at_most_parallel_hosts_at_once_and_each_one_reported(silent_servers: list[int]) -> None:
    hosts = [Host("127.0.0.1", port) for port in silent_servers]
    busy: set[str] = set()
    most = 0

    def progress(host: Host, step: str) -> None:
        nonlocal most
        if step == "done":
            busy.discard(host.label)
        else:
            busy.add(host.label)
        most = max(most, len(busy))

    settings = InstallSettings(parallel=2, connect_timeout=1.0)
    results = asyncio.run(uninstall_hosts(hosts, settings, progress))
    assert most == 2
    assert [r.host for r in results] == hosts  # in the order given
    assert {(r.status, r.detail) for r in results} == {(Status.unreachable, "timed out")}
