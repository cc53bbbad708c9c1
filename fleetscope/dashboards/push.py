"""Upload the committed dashboards to a Grafana through its HTTP API, with grafana-client.

Each dashboard is created or updated by its uid in one request, as Grafana's dashboard API documents
(``POST /api/dashboards/db`` with ``{"dashboard": {...}, "folderUid": ..., "overwrite": true}``; the
``id`` is left out so that the uid decides). The folder's uid comes from its title (:func:`folder_uid`);
it is looked up (``GET /api/folders/UID``) and created when Grafana answers 404 (``POST /api/folders``).
The token is a Grafana service-account token, sent as ``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError

from fleetscope.dashboards import GRAFANA_DIR

#: Seconds to wait for Grafana to connect and to answer each request.
TIMEOUT_SECONDS = 10.0


class PushError(Exception):
    """The dashboards could not be uploaded; the message is one line for the user."""


@dataclass(frozen=True)
class Pushed:
    """One uploaded dashboard, as Grafana answered.

    Attributes:
        uid: The dashboard's uid.
        title: Its title.
        version: The version Grafana now holds.
        url: Its path on the Grafana server (``/d/UID/SLUG``).
    """

    uid: str
    title: str
    version: int
    url: str


def load(folder: Path = GRAFANA_DIR) -> list[dict[str, Any]]:
    """Read every dashboard JSON file of ``folder`` (``*.json``), sorted by file name.

    Raises:
        PushError: The folder has no dashboard, or a file is not a dashboard (not JSON, no uid or title).
    """
    boards = []
    for path in sorted(folder.glob("*.json")):
        try:
            board = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PushError(f"{path}: not a dashboard JSON file ({exc})") from exc
        if not isinstance(board, dict) or not board.get("uid") or not board.get("title"):
            raise PushError(f"{path}: not a dashboard (no uid or title)")
        boards.append(board)
    if not boards:
        raise PushError(f"{folder}: no dashboard JSON files")
    return boards


def _api(url: str, token: str) -> GrafanaApi:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PushError(f"--url {url!r} is not an http:// or https:// Grafana address")
    if not token.strip():
        raise PushError("--token is empty; give a Grafana service-account token")
    # grafana-client joins the path prefix and "api" without a slash: a Grafana served under a sub-path
    # (https://host/grafana) needs the trailing one.
    base = url if url.endswith("/") or not parts.path.strip("/") else url + "/"
    return GrafanaApi.from_url(base, credential=token.strip(), timeout=TIMEOUT_SECONDS)


def folder_uid(title: str) -> str:
    """The uid of the folder titled ``title``: its lower-case words joined by ``-``, at most 40 characters
    (Grafana's limit), so a second push finds the folder the first made without listing every folder."""
    words = re.findall(r"[a-z0-9]+", title.lower())
    if not words:
        raise PushError(f"--folder {title!r} has no letter or digit to make a folder uid of")
    return "-".join(words)[:40]


def _ensure_folder(api: GrafanaApi, title: str) -> str:
    uid = folder_uid(title)
    try:
        api.folder.get_folder(uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder(title, uid=uid)
    return uid


def push(url: str, token: str, folder: str = "fleetscope", source: Path = GRAFANA_DIR) -> list[Pushed]:
    """Create or update every dashboard of ``source`` in the Grafana at ``url``.

    Args:
        url: Grafana's base address (``http://grafana:3000``, ``https://host/grafana``).
        token: A service-account token with the Editor role (dashboards and folders).
        folder: Title of the folder the dashboards go into; created when missing (uid from the title).
        source: Folder of dashboard JSON files; default the committed ones.

    Returns:
        One entry per dashboard, in file order.

    Raises:
        PushError: A file is not a dashboard, Grafana is unreachable or refused the token (401) or the
            permission (403), or answered an error; the message says which, on one line.
    """
    boards = load(source)
    api = _api(url, token)
    done: list[Pushed] = []
    try:
        folder = _ensure_folder(api, folder)
        for board in boards:
            body = {key: value for key, value in board.items() if key != "id"}
            answer = api.dashboard.update_dashboard(
                {"dashboard": body, "folderUid": folder, "overwrite": True}
            )
            done.append(Pushed(board["uid"], board["title"], int(answer["version"]), str(answer["url"])))
        return done
    except (GrafanaException, requests.RequestException, KeyError, TypeError, ValueError) as exc:
        # Each dashboard is written whole by Grafana; say how far the upload got before it stopped.
        progress = f" ({len(done)} of {len(boards)} dashboards uploaded before that)" if done else ""
        raise PushError(f"Grafana at {url} {_problem(exc)}{progress}") from exc


def _problem(exc: Exception) -> str:
    """What went wrong, in a few words, from grafana-client's or requests' exception."""
    if isinstance(exc, GrafanaUnauthorizedError):
        return f"refused the token (401 Unauthorized): {_said(exc)}"
    if isinstance(exc, GrafanaClientError) and exc.status_code == 403:
        why = "the token's role cannot write dashboards or folders"
        return f"refused the upload (403 Forbidden: {why}): {_said(exc)}"
    if isinstance(exc, GrafanaException):
        return f"answered {exc.status_code}: {_said(exc)}"
    if isinstance(exc, requests.exceptions.JSONDecodeError):
        return "does not answer as Grafana's HTTP API does (not JSON)"
    if isinstance(exc, requests.RequestException):
        return f"is unreachable: {type(exc).__name__}"
    return f"does not answer as Grafana's HTTP API does ({exc!r})"


def _said(exc: GrafanaException) -> str:
    response = exc.response
    text = response["message"] if isinstance(response, dict) and "message" in response else response
    return " ".join(str(text).split())[:200] or exc.message
