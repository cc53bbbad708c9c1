"""The embedded store opens no TCP port another host could reach.

The server's listening sockets are read twice, from the kernel's socket table (psutil) and with
``ss -ltnp`` (iproute2) where installed. The same reading of the Bolt test server, which does open
a TCP listener, shows that the check sees a listener when there is one.
"""

from __future__ import annotations

import ipaddress
import shutil
import stat
import subprocess
from pathlib import Path

import psutil
import pytest

from fleetscope.lineage.store.bolt import BoltStore
from fleetscope.lineage.store.embedded import EmbeddedStore, FalkorDBServer


def psutil_listeners(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the process."""
    return [
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.Process(pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]


def ss_listeners(pid: int) -> list[tuple[str, int]]:
    """(address, port) of the process's listening TCP sockets as ``ss -ltnpH`` prints them."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        local = line.split()[3]  # e.g. 127.0.0.1:6379, [::]:7687, *:7687
        host, _, port = local.rpartition(":")
        found.append((host.strip("[]"), int(port)))
    return found


def reachable_from_elsewhere(address: str) -> bool:
    if address == "*":
        return True
    return not ipaddress.ip_address(address.split("%")[0]).is_loopback


def listener_readers() -> list[object]:
    readers: list[object] = [psutil_listeners]
    if shutil.which("ss"):
        readers.append(ss_listeners)
    return readers


@pytest.mark.parametrize("read", listener_readers(), ids=lambda f: getattr(f, "__name__", "?"))
def test_the_embedded_store_listens_on_no_reachable_tcp_port(tmp_path: Path, read: object) -> None:
    store = EmbeddedStore(tmp_path / "graph")
    try:
        store.write("MERGE (n:Run {id: $id}) RETURN n.id AS id", {"id": "r1"})
        assert store.server.process is not None
        listeners = read(store.server.process.pid)  # type: ignore[operator]
        assert [addr for addr in listeners if reachable_from_elsewhere(addr[0])] == []
        socket_mode = store.server.socket_path.stat().st_mode
        assert stat.S_ISSOCK(socket_mode) and stat.S_IMODE(socket_mode) == 0o700
    finally:
        store.close()


@pytest.mark.parametrize("read", listener_readers(), ids=lambda f: getattr(f, "__name__", "?"))
def test_the_check_sees_the_bolt_listener_of_the_test_server(
    bolt_server: FalkorDBServer, bolt_store: BoltStore, read: object
) -> None:
    assert bolt_server.process is not None and bolt_store.read("RETURN 1 AS one") == [{"one": 1}]
    listeners = read(bolt_server.process.pid)  # type: ignore[operator]
    assert bolt_server.bolt_port in {port for _, port in listeners}
