"""Install, upgrade and uninstall the exporter on many hosts over SSH, in parallel with a bound.

Per host, :func:`install_hosts` connects (asyncssh, with the user's keys, agent, ``~/.ssh/config`` and
``known_hosts``), probes what is there, and then:

- the same version, running, with the same service definition: changes nothing (``unchanged``);
- the same version otherwise: rewrites the service definition and (re)starts it;
- no version, or another one: uploads the wheels, installs them into ``releases/VERSION/venv`` with
  ``pip --no-index``, stops the old exporter, switches ``current``, starts the new one and checks
  ``/metrics`` from this machine. If the new exporter does not answer in time, the old release and
  its service definition come back (``rolled back``) and the new release is deleted.

Every host runs in its own task and every error is caught per host, so one host that fails or cannot
be reached never stops the others; each gets a :class:`HostResult`.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import socket
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import asyncssh

from fleetscope.install import remote
from fleetscope.install.hosts import Host
from fleetscope.install.wheelhouse import Wheelhouse

#: Where the exporter goes on each host unless ``--prefix`` or a hosts file says otherwise.
DEFAULT_PREFIX = "/opt/fleetscope"
#: The exporter's port (see docs/design.md, "Exporter port").
DEFAULT_EXPORTER_PORT = 9847
#: Hosts worked on at once.
DEFAULT_PARALLEL = 32
#: Seconds a started exporter has to answer on /metrics.
DEFAULT_METRICS_TIMEOUT_SECONDS = 60.0
#: Seconds a stopped exporter has to stop answering.
STOP_TIMEOUT_SECONDS = 10.0


class Status(StrEnum):
    """What happened on one host."""

    installed = "installed"
    upgraded = "upgraded"
    unchanged = "unchanged"
    restarted = "restarted"
    rolled_back = "rolled back"
    failed = "failed"
    unreachable = "unreachable"
    uninstalled = "uninstalled"
    absent = "not installed"

    @property
    def ok(self) -> bool:
        """Whether the host ended as asked."""
        return self not in (Status.rolled_back, Status.failed, Status.unreachable)


@dataclass
class HostResult:
    """The outcome on one host.

    Attributes:
        host: the host.
        status: what happened.
        before: the version found there (None: none).
        after: the version there now (None: none).
        target: ``HOST:PORT`` Prometheus scrapes, where the exporter answered (after uninstall: the
            target removed).
        detail: why it failed, or what was done.
    """

    host: Host
    status: Status
    before: str | None = None
    after: str | None = None
    target: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class InstallSettings:
    """How to reach the hosts and what to put there; hosts-file overrides win per host.

    Attributes:
        prefix: install root on each host.
        exporter_port: the exporter's TCP port.
        exporter_bind: address the exporter listens on; empty for every interface.
        python: the host's Python (3.11 or newer, with ``venv``) that makes the virtual environment.
        user: SSH login; None for ``~/.ssh/config`` or the current user.
        identity: private key file; None for the agent and the default keys.
        known_hosts: known_hosts file checked strictly; None for ``~/.ssh/known_hosts``.
        parallel: hosts worked on at once.
        metrics_timeout: seconds a started exporter has to answer on ``/metrics``.
        connect_timeout: seconds to open an SSH connection.
    """

    prefix: str = DEFAULT_PREFIX
    exporter_port: int = DEFAULT_EXPORTER_PORT
    exporter_bind: str = ""
    python: str = "python3"
    user: str | None = None
    identity: Path | None = None
    known_hosts: Path | None = None
    parallel: int = DEFAULT_PARALLEL
    metrics_timeout: float = DEFAULT_METRICS_TIMEOUT_SECONDS
    connect_timeout: float = 15.0


#: Called with a host and the step it starts ("connecting", "uploading", ..., "done").
Progress = Callable[[Host, str], None]


class RemoteError(RuntimeError):
    """A remote step failed; the message holds the step and the host's last error line."""


@dataclass
class _Target:
    """One host with its settings resolved."""

    host: Host
    prefix: str
    port: int
    python: str
    facts: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """``HOST:PORT`` of the exporter, as Prometheus and the /metrics check reach it."""
        name = self.host.name
        return f"[{name}]:{self.port}" if ":" in name else f"{name}:{self.port}"


def _resolve(host: Host, settings: InstallSettings) -> _Target:
    over: dict[str, Any] = dict(host.overrides)
    return _Target(
        host,
        str(over.get("prefix", settings.prefix)),
        int(over.get("exporter_port", settings.exporter_port)),
        str(over.get("python", settings.python)),
    )


async def _connect(host: Host, settings: InstallSettings) -> asyncssh.SSHClientConnection:
    options: dict[str, Any] = {"connect_timeout": settings.connect_timeout}
    if host.ssh_port is not None:
        options["port"] = host.ssh_port
    user = host.user or settings.user
    if user:
        options["username"] = user
    if settings.identity is not None:
        options["client_keys"] = [str(settings.identity)]
    if settings.known_hosts is not None:
        options["known_hosts"] = str(settings.known_hosts)
    return await asyncssh.connect(host.name, **options)


async def _sh(conn: asyncssh.SSHClientConnection, step: str, script: str, ok: tuple[int, ...] = (0,)) -> str:
    """Run a script with ``sh -s``; returns its stdout, or raises RemoteError naming the step."""
    done = await conn.run("sh -s", input=script, check=False)
    if done.exit_status not in ok:
        lines = [line for line in str(done.stderr or "").splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {done.exit_status}"
        raise RemoteError(f"{step}: {why}")
    return str(done.stdout or "")


async def _write(sftp: asyncssh.SFTPClient, path: str, text: str, mode: int = 0o644) -> None:
    """Write a remote file whole: a temporary file renamed over it, so it is never half written."""
    tmp = f"{path}.tmp"
    async with sftp.open(tmp, "w") as f:
        await f.write(text)
    await sftp.chmod(tmp, mode)
    await sftp.posix_rename(tmp, path)


def _metrics_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200 and b"fleetscope_" in response.read()
    except (OSError, http.client.HTTPException):  # refused, reset, timed out, or not HTTP at all
        return False


async def _wait_for_metrics(target: _Target, timeout: float, answering: bool = True) -> bool:
    """Poll ``http://HOST:PORT/metrics`` from this machine until it answers with fleetscope series
    (or, with ``answering=False``, until it no longer does); False when ``timeout`` passes first."""
    url = f"http://{target.address}/metrics"
    deadline = time.monotonic() + timeout
    while True:
        if await asyncio.to_thread(_metrics_ok, url) == answering:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.5)


class _HostInstall:
    """The install steps on one connected host."""

    def __init__(
        self,
        conn: asyncssh.SSHClientConnection,
        target: _Target,
        wheelhouse: Wheelhouse,
        settings: InstallSettings,
        progress: Progress,
    ) -> None:
        self.conn, self.t, self.wheelhouse, self.settings = conn, target, wheelhouse, settings
        self.progress = lambda step: progress(target.host, step)
        facts = target.facts
        self.systemd = facts.get("systemd") == "1" and facts.get("uid") == "0"
        self.prefix = target.prefix
        bind = settings.exporter_bind
        if self.systemd:
            self.service_path = remote.UNIT_PATH
            self.service_text = remote.systemd_unit(self.prefix, bind, target.port)
        else:
            self.service_path = f"{self.prefix}/bin/supervise"
            self.service_text = remote.supervisor_script(self.prefix, bind, target.port)

    async def run(self) -> HostResult:
        facts, version = self.t.facts, self.wheelhouse.version
        before = facts.get("current") or None
        result = HostResult(self.t.host, Status.failed, before=before, after=before)
        same_service = facts.get("service") == hashlib.sha256(self.service_text.encode()).hexdigest()
        if before == version:
            if same_service and facts.get("running") == "1" and await _wait_for_metrics(self.t, 5):
                result.status, result.target = Status.unchanged, self.t.address
                result.detail = f"{version} already running"
                return result
            self.progress("restarting")
            await self._restart_with(self.service_text)
            if await _wait_for_metrics(self.t, self.settings.metrics_timeout):
                result.status, result.target = Status.restarted, self.t.address
                result.detail = "service definition rewritten" if not same_service else "was not running"
            else:
                result.detail = f"exporter did not answer on /metrics: {await self._log_line()}"
            return result

        await self._upload_and_install(version)
        sftp = await self.conn.start_sftp_client()
        async with sftp:
            old_text = await self._read(sftp, self.service_path) if before else None
        self.progress("starting")
        await _sh(self.conn, "stop", remote.stop(self.prefix, self.systemd))
        await _sh(self.conn, "switch", remote.switch(self.prefix, version))
        await self._restart_with(self.service_text)
        self.progress("checking /metrics")
        if await _wait_for_metrics(self.t, self.settings.metrics_timeout):
            await _sh(self.conn, "prune", remote.prune_releases(self.prefix))
            result.status = Status.upgraded if before else Status.installed
            result.after, result.target = version, self.t.address
            result.detail = f"{before} → {version}" if before else ""
            return result
        why = await self._log_line()
        if before is None:
            result.after = version
            result.detail = (
                f"exporter did not answer on /metrics within {self.settings.metrics_timeout:g} s: {why}"
            )
            return result
        self.progress("rolling back")
        await _sh(self.conn, "stop", remote.stop(self.prefix, self.systemd))
        await _sh(self.conn, "switch back", remote.switch(self.prefix, before))
        await self._restart_with(old_text or self.service_text)
        await _sh(self.conn, "remove release", remote.remove_release(self.prefix, version))
        back = await _wait_for_metrics(self.t, self.settings.metrics_timeout)
        result.status = Status.rolled_back
        result.target = self.t.address if back else None
        result.detail = f"{version} did not answer on /metrics ({why}); back on {before}" + (
            "" if back else f", which does not answer either: {await self._log_line()}"
        )
        return result

    def _check_python(self) -> None:
        have, want = self.t.facts.get("python", ""), self.wheelhouse.python
        if not have:
            raise RemoteError(f"no Python at {self.t.python!r} on the host (set --python)")
        major, _, minor = have.partition(".")
        if (int(major), int(minor)) < (3, 11):
            raise RemoteError(f"the host's Python is {have}; fleetscope needs 3.11 or newer (set --python)")
        if want and have != want:
            raise RemoteError(
                f"the host's Python is {have} but the wheelhouse is built for {want}: build one for {have} "
                f"(pip download --only-binary=:all: --python-version {have}) or set --python"
            )

    async def _upload_and_install(self, version: str) -> None:
        self._check_python()
        self.progress("uploading wheels")
        staging = f"{self.prefix}/staging"
        await _sh(self.conn, "prepare", remote.prepare_staging(self.prefix))
        sftp = await self.conn.start_sftp_client()
        async with sftp:
            await sftp.put([str(w) for w in self.wheelhouse.wheels], staging)
            marker = f"{self.prefix}/{remote.MARKER}"
            if not await sftp.exists(marker):
                await _write(
                    sftp, marker, "Installed by `fleetscope install`; `fleetscope uninstall` removes it.\n"
                )
        self.progress("installing wheels")
        await _sh(self.conn, "pip install", remote.install_release(self.prefix, self.t.python, version))

    async def _read(self, sftp: asyncssh.SFTPClient, path: str) -> str | None:
        try:
            async with sftp.open(path) as f:
                return str(await f.read())
        except asyncssh.SFTPNoSuchFile:
            return None

    async def _restart_with(self, service_text: str) -> None:
        await _sh(self.conn, "stop", remote.stop(self.prefix, self.systemd))
        # Whatever answers on the port now is not the exporter about to start, and would pass the
        # /metrics check in its place: an exporter left by hand, or another program.
        if not await _wait_for_metrics(self.t, STOP_TIMEOUT_SECONDS, answering=False):
            raise RemoteError(
                f"{self.t.address} still answers on /metrics with the exporter stopped: another process "
                "holds the port"
            )
        sftp = await self.conn.start_sftp_client()
        async with sftp:
            if not self.systemd:
                for folder in ("bin", "run", "log"):
                    await sftp.makedirs(f"{self.prefix}/{folder}", exist_ok=True)
            await _write(sftp, self.service_path, service_text, 0o755 if not self.systemd else 0o644)
        await _sh(self.conn, "start", remote.start(self.prefix, self.systemd))

    async def _log_line(self) -> str:
        try:
            text = await _sh(self.conn, "log", remote.log_tail(self.prefix, self.systemd))
        except (RemoteError, asyncssh.Error, OSError):
            return "no log"
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        own = [line for line in lines if not line.startswith(remote.SUPERVISOR_TAG)]
        return (own or lines or ["no output"])[-1]


async def _probe(conn: asyncssh.SSHClientConnection, target: _Target) -> None:
    out = await _sh(conn, "probe", remote.probe(target.prefix, target.python))
    target.facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


async def _on_each(
    hosts: Sequence[Host],
    settings: InstallSettings,
    progress: Progress,
    work: Callable[[asyncssh.SSHClientConnection, _Target], Any],
) -> list[HostResult]:
    """Run ``work`` on every host, at most ``settings.parallel`` at once; never raises for a host."""
    bound = asyncio.Semaphore(max(1, settings.parallel))

    async def one(host: Host) -> HostResult:
        async with bound:
            target = _resolve(host, settings)
            progress(host, "connecting")
            try:
                conn = await asyncio.wait_for(_connect(host, settings), settings.connect_timeout + 5)
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                progress(host, "done")
                return HostResult(host, Status.unreachable, detail=_reason(exc))
            try:
                async with conn:
                    await _probe(conn, target)
                    result: HostResult = await work(conn, target)
            except (RemoteError, asyncssh.Error, OSError, TimeoutError) as exc:
                result = HostResult(host, Status.failed, before=target.facts.get("current") or None)
                result.after, result.detail = result.before, _reason(exc)
            except Exception as exc:  # one host's surprise must not stop the others
                result = HostResult(
                    host, Status.failed, detail=f"internal error: {type(exc).__name__}: {exc}"
                )
            progress(host, "done")
            return result

    return list(await asyncio.gather(*(one(h) for h in hosts)))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (no SSH server on that port?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host: {exc.strerror}"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return f"host key not verifiable: {exc} (add the host to known_hosts)"
    if isinstance(exc, asyncssh.PermissionDenied):
        return f"permission denied: {exc}"
    return str(exc) or type(exc).__name__


async def install_hosts(
    hosts: Sequence[Host], wheelhouse: Wheelhouse, settings: InstallSettings, progress: Progress
) -> list[HostResult]:
    """Install or upgrade the exporter on every host; see the module docstring for the steps.

    Returns:
        One result per host, in the order given.
    """

    async def work(conn: asyncssh.SSHClientConnection, target: _Target) -> HostResult:
        return await _HostInstall(conn, target, wheelhouse, settings, progress).run()

    return await _on_each(hosts, settings, progress, work)


async def uninstall_hosts(
    hosts: Sequence[Host], settings: InstallSettings, progress: Progress
) -> list[HostResult]:
    """Stop the exporter and remove what :func:`install_hosts` put on every host.

    A host whose prefix holds no installer marker is reported ``not installed`` and left untouched
    (the unit file, if any, is still removed).
    """

    async def work(conn: asyncssh.SSHClientConnection, target: _Target) -> HostResult:
        before = target.facts.get("current") or None
        progress(target.host, "removing")
        done = await conn.run("sh -s", input=remote.uninstall(target.prefix), check=False)
        if done.exit_status == 3:
            return HostResult(
                target.host,
                Status.absent,
                target=target.address,
                detail=f"no fleetscope install in {target.prefix}",
            )
        if done.exit_status != 0:
            lines = [line for line in str(done.stderr or "").splitlines() if line.strip()]
            raise RemoteError(f"uninstall: {lines[-1] if lines else f'exit status {done.exit_status}'}")
        return HostResult(
            target.host,
            Status.uninstalled,
            before=before,
            target=target.address,
            detail=f"removed {before or 'a broken install'} from {target.prefix}",
        )

    return await _on_each(hosts, settings, progress, work)


def update_file_sd(path: Path, add: Sequence[str] = (), remove: Sequence[str] = ()) -> list[str]:
    """Add and remove targets in a Prometheus ``file_sd`` file, written whole (temp file, rename).

    The file is the JSON form of ``file_sd_configs``: a list of ``{"targets": [...], "labels": {...}}``
    groups. Targets in other groups are kept; the installer's own targets live in the first group.

    Returns:
        The installer group's targets, sorted.

    Raises:
        ValueError: the existing file is not a file_sd JSON list.
        OSError: it cannot be read or written.
    """
    groups: list[dict[str, Any]] = [{"targets": [], "labels": {}}]
    if path.exists():
        loaded = json.loads(path.read_text() or "[]")
        if not isinstance(loaded, list) or not all(
            isinstance(g, dict) and isinstance(g.get("targets", []), list) for g in loaded
        ):
            raise ValueError(f"{path} is not a Prometheus file_sd JSON list of target groups")
        groups = loaded or groups
    drop = set(remove) | set(add)
    for group in groups:
        group["targets"] = [t for t in group.get("targets", []) if t not in drop]
    groups[0]["targets"] = sorted(set(groups[0]["targets"]) | set(add))
    groups[0].setdefault("labels", {})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)  # Prometheus reads it, often as another user
        with os.fdopen(fd, "w") as f:
            json.dump(groups, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return list(groups[0]["targets"])
