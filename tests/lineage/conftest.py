"""Lineage test set-up: real FalkorDB servers, started once per session and stopped after.

``store`` runs each contract test on every backend reachable here: the embedded store (Unix
socket, append-only file) and FalkorDB's Bolt listener through the ``neo4j`` driver. Each test gets
its own graph, so tests share the servers but not data. No Neo4j server can be installed here.
"""

from __future__ import annotations

import itertools
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetscope.lineage import AuditLog, GraphStore, Lineage
from fleetscope.lineage.store.bolt import BoltStore
from fleetscope.lineage.store.embedded import EmbeddedStore, FalkorDBServer

_graph_names = itertools.count()


def _free_port() -> int:
    # FalkorDB 4.16 silently skips its Bolt listener for BOLT_PORT above 32767, and the kernel's
    # ephemeral range starts above that, so pick a free port below it.
    for port in random.sample(range(20000, 32767), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32767")


@pytest.fixture(scope="session")
def embedded_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data_dir = tmp_path_factory.mktemp("falkordb-embedded")
    owner = EmbeddedStore(data_dir, graph="owner")
    yield data_dir
    owner.close()


@pytest.fixture(scope="session")
def bolt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FalkorDBServer]:
    server = FalkorDBServer(tmp_path_factory.mktemp("falkordb-bolt"), bolt_port=_free_port())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bolt_store(bolt_server: FalkorDBServer) -> Iterator[BoltStore]:
    # One driver for the session: FalkorDB 4.16's Bolt listener stops answering handshakes after
    # a few connections are opened and closed, so tests share one connection pool.
    store = BoltStore(f"bolt://127.0.0.1:{bolt_server.bolt_port}")
    yield store
    store.close()


@pytest.fixture(params=["embedded", "bolt"])
def store(request: pytest.FixtureRequest) -> Iterator[GraphStore]:
    graph = f"t{next(_graph_names)}"
    backend: GraphStore
    if request.param == "embedded":
        backend = EmbeddedStore(request.getfixturevalue("embedded_dir"), graph=graph)
    else:
        # FalkorDB's Bolt endpoint ignores the database name and serves one graph, so the Bolt
        # tests run one after another on that graph, emptied first.
        backend = request.getfixturevalue("bolt_store").on_database(graph)
        backend.write("MATCH (n) DETACH DELETE n")
    yield backend
    if request.param == "embedded":
        backend.close()


@pytest.fixture
def lineage(store: GraphStore, tmp_path: Path) -> Lineage:
    return Lineage(store, AuditLog(tmp_path / "audit.jsonl"), tmp_path / "quarantine.jsonl")


@pytest.fixture
def embedded_lineage(embedded_dir: Path, tmp_path: Path) -> Iterator[Lineage]:
    """A service on the embedded store alone, for OpenLineage events with facets: FalkorDB
    4.16.3's Bolt listener takes a statement and its parameters of about 4 KiB at most (the Bolt
    store refuses longer ones, see :mod:`fleetscope.lineage.store.bolt`), and one event with a
    few facets is longer. Small events are tested on every backend."""
    store = EmbeddedStore(embedded_dir, graph=f"t{next(_graph_names)}")
    yield Lineage(store, AuditLog(tmp_path / "audit.jsonl"), tmp_path / "quarantine.jsonl")
    store.close()


def count_graph(store: GraphStore) -> tuple[int, int]:
    """(nodes, relationships) in the store's graph, leaving out the write-ahead head (AuditHead)."""
    nodes = store.read("MATCH (n) WHERE NOT n:AuditHead RETURN count(n) AS c")[0]["c"]
    rels = store.read("MATCH ()-[r]->() RETURN count(r) AS c")[0]["c"]
    return nodes, rels


_SERVER_FIXTURES = {"embedded_dir", "bolt_server", "bolt_store", "store", "lineage", "embedded_lineage"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that talk to a FalkorDB server are integration tests, however they reach it."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents and _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
