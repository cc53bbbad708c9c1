"""`fleetscope dashboards push` against a real HTTP server on 127.0.0.1 that answers as Grafana's HTTP API
documents (grafana.com/docs/grafana/v11.0/developers/http_api/dashboard and .../folder): the requests
grafana-client sends are recorded and checked, and so are the errors on 401, 403 and no server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fleetscope.dashboards import GRAFANA_DIR
from tests.servers import free_port

pytest.importorskip("grafana_client", reason="needs the dashboards extra")

from fleetscope.dashboards.push import PushError, folder_uid, push

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "glsa_fleetscope_test_token"
BOARDS = {p.stem: json.loads(p.read_text()) for p in sorted(GRAFANA_DIR.glob("*.json"))}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Grafana:
    """What the fake's state and answers are: folders by uid, dashboards by uid, a forced status."""

    url: str
    requests: list[Request] = field(default_factory=list)
    folders: dict[str, str] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    status: int | None = None  # answer every request with this status (401, 403)
    fail_after: int | None = None  # answer 500 to dashboard writes once this many are stored


def _handler(grafana: Grafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            grafana.requests.append(Request(self.command, self.path, dict(self.headers.items()), body))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}" or grafana.status == 401:
                return self._answer(401, {"message": "Unauthorized", "messageId": "auth.unauthorized"})
            if grafana.status == 403:
                return self._answer(
                    403,
                    {
                        "accessErrorId": "ACE0000000001",
                        "message": "You'll need additional permissions to perform this action. "
                        "Permissions needed: dashboards:create",
                        "title": "Access denied",
                    },
                )
            if self.command == "GET" and self.path.startswith("/api/folders/"):
                uid = self.path.removeprefix("/api/folders/")
                if uid not in grafana.folders:
                    return self._answer(404, {"message": "folder not found", "status": "not-found"})
                return self._answer(200, {"id": 1, "uid": uid, "title": grafana.folders[uid], "version": 1})
            if self.command == "POST" and self.path == "/api/folders":
                grafana.folders[body["uid"]] = body["title"]
                url = f"/dashboards/f/{body['uid']}/{body['uid']}"
                return self._answer(200, {"id": 1, "uid": body["uid"], "title": body["title"], "url": url})
            if self.command == "POST" and self.path == "/api/dashboards/db":
                if grafana.fail_after is not None and len(grafana.versions) >= grafana.fail_after:
                    return self._answer(500, {"message": "Failed to save dashboard", "status": "error"})
                uid = body["dashboard"]["uid"]
                exists = uid in grafana.versions
                if exists and not body.get("overwrite"):
                    return self._answer(412, {"message": "The dashboard has been changed by someone else"})
                grafana.versions[uid] = grafana.versions.get(uid, 0) + 1
                answer = {
                    "id": len(grafana.versions),
                    "uid": uid,
                    "url": f"/d/{uid}/{uid}",
                    "status": "success",
                    "version": grafana.versions[uid],
                    "slug": uid,
                }
                return self._answer(200, answer)
            return self._answer(404, {"message": "Not found"})

        do_GET = do_POST = _handle

    return Handler


@pytest.fixture
def grafana() -> Iterator[Grafana]:
    grafana = Grafana("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(grafana))
    grafana.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield grafana
    finally:
        server.shutdown()
        server.server_close()


def test_push_creates_the_folder_then_every_dashboard_by_uid(grafana: Grafana) -> None:
    pushed = push(grafana.url, TOKEN, folder="GPU fleet")
    assert [(p.uid, p.version, p.url) for p in pushed] == [(uid, 1, f"/d/{uid}/{uid}") for uid in BOARDS]
    first, second, *posts = grafana.requests
    assert (first.method, first.path) == ("GET", "/api/folders/gpu-fleet")
    assert (second.method, second.path, second.body) == (
        "POST",
        "/api/folders",
        {"title": "GPU fleet", "uid": "gpu-fleet"},
    )
    assert len(posts) == len(BOARDS)
    for request, (uid, board) in zip(posts, BOARDS.items(), strict=True):
        assert (request.method, request.path) == ("POST", "/api/dashboards/db")
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Content-Type"] == "application/json"
        assert set(request.body) == {"dashboard", "folderUid", "overwrite"}
        assert request.body["folderUid"] == "gpu-fleet" and request.body["overwrite"] is True
        assert request.body["dashboard"] == {k: v for k, v in board.items() if k != "id"}
        assert request.body["dashboard"]["uid"] == uid


def test_a_second_push_updates_in_place(grafana: Grafana) -> None:
    push(grafana.url, TOKEN)
    grafana.requests.clear()
    pushed = push(grafana.url, TOKEN)
    assert {p.version for p in pushed} == {2}
    assert [(r.method, r.path) for r in grafana.requests][:1] == [("GET", "/api/folders/fleetscope")]
    assert ("POST", "/api/folders") not in [(r.method, r.path) for r in grafana.requests]


def test_a_refused_token_is_one_clear_error(grafana: Grafana) -> None:
    with pytest.raises(PushError, match=r"refused the token \(401 Unauthorized\): Unauthorized"):
        push(grafana.url, "glsa_wrong")
    grafana.status = 403
    with pytest.raises(PushError, match=r"403 Forbidden.*Permissions needed: dashboards:create"):
        push(grafana.url, TOKEN)
    assert grafana.versions == {}


def test_a_failure_midway_says_how_far_the_upload_got(grafana: Grafana) -> None:
    grafana.fail_after = 2
    with pytest.raises(
        PushError, match=r"answered 500: Failed to save dashboard \(2 of 6 dashboards uploaded"
    ):
        push(grafana.url, TOKEN)
    assert sorted(grafana.versions) == sorted(BOARDS)[:2]


def test_bad_arguments_and_no_server() -> None:
    with pytest.raises(PushError, match="is unreachable"):
        push(f"http://127.0.0.1:{free_port()}", TOKEN)
    with pytest.raises(PushError, match="not an http"):
        push("grafana:3000", TOKEN)
    with pytest.raises(PushError, match="--token is empty"):
        push("http://127.0.0.1:3000", " ")
    with pytest.raises(PushError, match="no letter or digit"):
        folder_uid("--")
    assert folder_uid("Team A / GPUs") == "team-a-gpus"


def test_a_folder_without_dashboards_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PushError, match="no dashboard JSON files"):
        push("http://127.0.0.1:3000", TOKEN, source=tmp_path)
    (tmp_path / "broken.json").write_text('{"title": "x"')
    with pytest.raises(PushError, match=r"broken\.json: not a dashboard JSON file"):
        push("http://127.0.0.1:3000", TOKEN, source=tmp_path)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FLEETSCOPE_GRAFANA_TOKEN", None)
    command = [sys.executable, "-m", "fleetscope.console.cli", "dashboards", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def test_the_command_prints_each_dashboard_and_errors_in_one_line(grafana: Grafana) -> None:
    done = _cli("push", "--url", grafana.url, "--token", TOKEN, "--folder", "fleetscope")
    assert done.returncode == 0, done.stderr
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == list(BOARDS)
    refused = _cli("push", "--url", grafana.url, "--token", "glsa_wrong")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "401 Unauthorized" in refused.stderr
    down = _cli("push", "--url", f"http://127.0.0.1:{free_port()}", "--token", TOKEN)
    assert down.returncode == 1 and down.stderr.count("\n") == 1 and "unreachable" in down.stderr
    usage = _cli("push", "--url", grafana.url)
    assert usage.returncode == 2 and "--token" in usage.stderr
    from_env = subprocess.run(
        [sys.executable, "-m", "fleetscope.console.cli", "dashboards", "push", "--url", grafana.url],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "FLEETSCOPE_GRAFANA_TOKEN": TOKEN},
        timeout=60,
    )
    assert from_env.returncode == 0, from_env.stderr
