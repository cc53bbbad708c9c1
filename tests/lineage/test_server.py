"""The OpenLineage HTTP endpoint over real HTTP on 127.0.0.1, on the embedded store.

Events come from the OpenLineage spec's own examples and from the real ``openlineage-python`` client
(``OpenLineageClient`` + ``HttpTransport``, ``api_key`` auth, gzip), which proves the endpoint speaks
what the OpenLineage HTTP transport sends.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import schema_dataset
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpCompression,
    HttpConfig,
    HttpTransport,
)

from fleetscope.lineage import AuditLog, Lineage, verify_log
from fleetscope.lineage import server as server_module
from fleetscope.lineage.server import LINEAGE_PATH, MAX_BODY_BYTES, LineageServer
from fleetscope.lineage.store.embedded import EmbeddedStore
from tests.lineage.conftest import count_graph

EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures/openlineage/example_full_event.json"
PROBE_TRAILING_BLANK = EXAMPLE.with_name("probe_ol_trailing_space_dataset.jsonl")
TOKEN = "s3cret-token-for-tests"
PRODUCER = "https://github.com/fleetscope/fleetscope/tests"


@pytest.fixture
def service(embedded_dir: Path, tmp_path: Path) -> Iterator[Lineage]:
    store = EmbeddedStore(embedded_dir, graph=f"http-{uuid.uuid4().hex[:8]}")
    lin = Lineage(store, AuditLog(tmp_path / "audit.jsonl"), tmp_path / "quarantine.jsonl")
    yield lin
    lin.close()


@contextmanager
def serving(lin: Lineage, api_key: str | None = None) -> Iterator[str]:
    """Run the endpoint on a free 127.0.0.1 port; yields its base URL."""
    server = LineageServer(lin, "127.0.0.1", 0, api_key)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        thread.join(10)


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url + LINEAGE_PATH,
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def runs(lin: Lineage) -> list[dict[str, Any]]:
    return lin.query(
        "MATCH (r:Run) WHERE r.state IS NOT NULL RETURN r.id AS id, r.state AS state, r.job_name AS job "
        "ORDER BY id"
    )


def test_accepted_event_lands_in_the_graph(service: Lineage) -> None:
    with serving(service) as url:
        status, body = post(url, EXAMPLE.read_bytes())
    assert (status, body) == (201, {"status": "applied"})
    assert runs(service) == [
        {"id": "ea041791-68bc-4ae1-bd89-4c8106a157e4", "state": "COMPLETE", "job": "myjob.mytask"}
    ]
    edges = service.query(
        "MATCH (:Run)-[e]->(v:DatasetVersion) RETURN type(e) AS rel, v.id AS id ORDER BY rel"
    )
    table = "my-datasource-namespace|instance.schema.table@unversioned"
    assert edges == [{"rel": "PRODUCED", "id": table}, {"rel": "USED", "id": table}]
    assert verify_log(service.log.path).records == 1


def test_a_dataset_name_ending_in_a_blank_is_applied_and_the_endpoint_keeps_answering(
    service: Lineage,
) -> None:
    # The lineage probe 13: good event, one whose dataset is "public.orders ", good event again.
    bad, good = PROBE_TRAILING_BLANK.read_bytes().splitlines()[:2]
    with serving(service) as url:
        answers = [post(url, body) for body in (good, bad, good)]
    assert answers == [(201, {"status": "applied"})] * 3
    assert verify_log(service.log.path).records == 2  # the good event sent twice is logged once
    names = service.query("MATCH (d:Dataset) RETURN d.name AS name")
    assert "public.orders " in {row["name"] for row in names}


def test_broken_event_is_refused_with_its_reason_and_quarantined(service: Lineage) -> None:
    broken = json.loads(EXAMPLE.read_text())
    broken["run"]["runId"] = "not-a-uuid"
    with serving(service) as url:
        post(url, EXAMPLE.read_bytes())
        before = count_graph(service.store)
        status, body = post(url, json.dumps(broken).encode())
        bad_json_status, bad_json = post(url, b'{"eventType": "START",')
        stats = requests.get(f"{url}{LINEAGE_PATH}/stats", timeout=10).json()
    assert status == 400
    assert body["error"].startswith("RunEvent run/runId: 'not-a-uuid' is not a 'uuid'")
    assert bad_json_status == 400 and bad_json["error"].startswith("not JSON")
    assert count_graph(service.store) == before
    quarantined = [json.loads(line) for line in service.quarantine.read_text().splitlines()]
    assert [q["reason"] for q in quarantined] == [body["error"], bad_json["error"]]
    assert json.loads(quarantined[0]["event"])["run"]["runId"] == "not-a-uuid"
    assert quarantined[0]["source"].startswith("http:127.0.0.1")
    assert stats == {"accepted": 1, "rejected": 2}
    assert verify_log(service.log.path).records == 1


def test_bearer_token_is_required_when_configured(service: Lineage) -> None:
    event = EXAMPLE.read_bytes()
    with serving(service, api_key=TOKEN) as url:
        missing = post(url, event)
        wrong = post(url, event, {"Authorization": "Bearer not-the-token"})
        basic = post(url, event, {"Authorization": f"Basic {TOKEN}"})
        stats_without = requests.get(f"{url}{LINEAGE_PATH}/stats", timeout=10).status_code
        assert count_graph(service.store) == (0, 0)
        accepted = post(url, event, {"Authorization": f"Bearer {TOKEN}"})
    for status, body in (missing, wrong, basic):
        assert status == 401
        assert body == {"error": "missing or wrong bearer token"}
    assert stats_without == 401
    assert accepted == (201, {"status": "applied"})
    assert len(runs(service)) == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_refuses_to_listen_off_loopback_without_a_token(service: Lineage, host: str) -> None:
    with pytest.raises(ValueError, match=f"refusing to listen on {host} without a token"):
        LineageServer(service, host, 0, None)


def test_loopback_names_need_no_token(service: Lineage) -> None:
    server = LineageServer(service, "localhost", 0, None)
    try:
        assert server.socket.getsockname()[0] in {"127.0.0.1", "::1"}
    finally:
        server.socket.close()


def _client(url: str, api_key: str, compression: HttpCompression | None = None) -> OpenLineageClient:
    config = HttpConfig(
        url=url,
        auth=ApiKeyTokenProvider({"api_key": api_key}),
        compression=compression,
        timeout=10,
        retry={"total": 0},
    )
    return OpenLineageClient(transport=HttpTransport(config))


def _client_event(run_id: str, state: RunState, time: str) -> RunEvent:
    schema = schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name="text", type="string")]
    )
    return RunEvent(
        eventType=state,
        eventTime=time,
        run=Run(runId=run_id),
        job=Job(namespace="training", name="sft-7b"),
        producer=PRODUCER,
        inputs=[InputDataset(namespace="s3://corpus", name="chat", facets={"schema": schema})],
        outputs=[OutputDataset(namespace="s3://models", name="sft-7b")],
    )


@pytest.mark.parametrize("compression", [None, HttpCompression.GZIP], ids=["plain", "gzip"])
def test_the_openlineage_python_client_is_accepted(
    service: Lineage, compression: HttpCompression | None
) -> None:
    run_id = str(uuid.uuid4())
    with serving(service, api_key=TOKEN) as url:
        client = _client(url, TOKEN, compression)
        client.emit(_client_event(run_id, RunState.START, "2024-03-01T10:00:00+00:00"))
        client.emit(_client_event(run_id, RunState.COMPLETE, "2024-03-01T12:30:00.500+00:00"))
        client.close()
    rows = service.query(
        "MATCH (r:Run {id: $id}) RETURN r.state AS state, r.job_namespace AS ns, r.job_name AS job, "
        "r.started_at AS started, r.ended_at AS ended",
        {"id": run_id},
    )
    assert rows == [
        {
            "state": "COMPLETE",
            "ns": "training",
            "job": "sft-7b",
            "started": "2024-03-01T10:00:00.000000Z",
            "ended": "2024-03-01T12:30:00.500000Z",
        }
    ]
    edges = service.query(
        "MATCH (r:Run {id: $id})-[e]->(v:DatasetVersion) RETURN type(e) AS rel, v.id AS v ORDER BY rel",
        {"id": run_id},
    )
    assert edges == [
        {"rel": "PRODUCED", "v": "s3://models|sft-7b@unversioned"},
        {"rel": "USED", "v": "s3://corpus|chat@unversioned"},
    ]
    assert service.stats.accepted == 2


def test_the_openlineage_python_client_with_a_wrong_key_is_refused(service: Lineage) -> None:
    with serving(service, api_key=TOKEN) as url:
        client = _client(url, "wrong-key")
        with pytest.raises(requests.HTTPError, match="401"):
            client.emit(_client_event(str(uuid.uuid4()), RunState.START, "2024-03-01T10:00:00+00:00"))
        client.close()
    assert count_graph(service.store) == (0, 0)


def test_a_get_of_the_events_path_is_a_wrong_method_not_a_wrong_path(service: Lineage) -> None:
    with serving(service) as base:
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(base + LINEAGE_PATH, timeout=10)
        with answer.value as error:
            assert (error.code, error.headers["Allow"]) == (405, "POST")
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(base + "/api/v2/nothing", timeout=10)
        with answer.value as error:
            assert error.code == 404


def raw_request(port: int, head: bytes, body: bytes = b"") -> bytes:
    """Send bytes as they are (headers no client library would send) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize("length", [b"abc", b"-1", b"1e3", b"12, 13"])
def test_a_content_length_that_is_not_a_number_is_answered_400(service: Lineage, length: bytes) -> None:
    with serving(service) as url:
        answer = raw_request(
            _port(url),
            b"POST /api/v1/lineage HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
            + length
            + b"\r\n\r\n",
            b"{}",
        )
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert count_graph(service.store) == (0, 0)


def test_a_gzip_bomb_is_refused_without_inflating_it(service: Lineage) -> None:
    bomb = gzip.compress(b"0" * (64 << 20), compresslevel=1)  # 64 MiB of zeros in well under 1 MiB
    with serving(service) as url:
        status, body = post(url, bomb, {"Content-Encoding": "gzip"})
    assert (status, body) == (413, {"error": f"body over {MAX_BODY_BYTES} bytes once decompressed"})
    assert not service.quarantine.exists()


def test_a_chunked_body_over_the_limit_is_refused(service: Lineage) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    with serving(service) as url:
        response = requests.post(url + LINEAGE_PATH, data=chunks(), timeout=60)
    assert response.status_code == 413


def test_connections_that_never_finish_their_headers_are_closed(
    service: Lineage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "HEADER_TIMEOUT_S", 0.5)
    with serving(service) as url:
        slow = [socket.create_connection(("127.0.0.1", _port(url)), timeout=10) for _ in range(300)]
        for sock in slow:
            sock.sendall(b"POST /api/v1/lineage HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        closed = sum(1 for sock in slow if sock.recv(1) == b"")  # b"": the server closed it
        status, _ = post(url, EXAMPLE.read_bytes())
        for sock in slow:
            sock.close()
    assert closed == 300
    assert status == 201


def test_a_burst_of_concurrent_posts_is_answered_without_resets(service: Lineage) -> None:
    async def burst(port: int, count: int) -> list[bytes]:
        async def one() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /api/v1/lineage HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Length: 2\r\n\r\n{}"
            )
            await writer.drain()
            answer = await reader.read()
            writer.close()
            return answer

        return await asyncio.gather(*(one() for _ in range(count)))

    with serving(service) as url:
        answers = asyncio.run(burst(_port(url), 1000))
    assert [a.split(b" ", 2)[1] for a in answers] == [b"400"] * 1000  # every one answered, none reset
