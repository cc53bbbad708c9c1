"""``fleetscope up``: the whole stack on one machine, on embedded defaults.

Starts three child processes, each the ordinary ``fleetscope`` command a user could run by hand: the
exporter for this node, the collector scraping it into the SQLite incident store, and the console
reading that store. Each child runs in its own session, so a Ctrl-C in the terminal reaches only this
supervisor, which then stops the children in reverse order (SIGTERM, then SIGKILL after a grace
period) and exits 0. A child that dies on its own (a busy port, a missing extra) stops the stack: its
name, exit status and the tail of its log are printed and the exit status is 1.

Each child's output goes to ``DATA_DIR/up/NAME.log``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

#: Seconds a child gets to exit after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 10.0
#: Lines of a failed child's log shown to the user.
LOG_TAIL_LINES = 15


class StackError(Exception):
    """A child of the stack did not come up, or exited while the stack ran."""


@dataclass
class Service:
    """One child process of the stack.

    Attributes:
        name: what the user reads (``exporter``, ``collector``, ``console``).
        argv: the command line, starting with the Python interpreter.
        ready_url: an HTTP URL that answers 200 once the service is ready.
        shown_url: the URL printed for the user.
    """

    name: str
    argv: list[str]
    ready_url: str
    shown_url: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None

    def log_tail(self) -> str:
        """The last lines of the service's log, or a note that it wrote nothing."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty log)"


def fleetscope_argv(*args: str) -> list[str]:
    """The command line of a ``fleetscope`` sub-command run by this interpreter."""
    return [sys.executable, "-m", "fleetscope.console.cli", *args]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Stack:
    """Starts, watches and stops the services.

    Args:
        services: in start order; stopped in reverse.
        log_dir: where each service's log goes (created).
        echo: prints one line for the user.
        ready_timeout: seconds a service has to answer its ready URL.
    """

    def __init__(
        self,
        services: Sequence[Service],
        log_dir: Path,
        echo: Callable[[str], None],
        ready_timeout: float = 90.0,
    ) -> None:
        self.services = list(services)
        self.log_dir = log_dir
        self.echo = echo
        self.ready_timeout = ready_timeout
        self._logs: list[IO[bytes]] = []

    def start(self) -> None:
        """Start every service and wait until each answers.

        Raises:
            StackError: a service exited or did not answer within the timeout (the others are
                left running; call :meth:`stop`).
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for service in self.services:
            if _answers(service.ready_url):
                # Something else (an earlier stack, a hand-started exporter) holds the port: waiting for
                # the URL would take its answer for this service's.
                raise StackError(
                    f"{service.name}: {service.ready_url} already answers; is another one running?"
                )
            service.log_path = self.log_dir / f"{service.name}.log"
            log = open(service.log_path, "wb")  # noqa: SIM115 - closed in stop()
            self._logs.append(log)
            service.process = subprocess.Popen(
                service.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._wait_ready(service)
            self.echo(f"{service.name:<10} {service.shown_url}")

    def _wait_ready(self, service: Service) -> None:
        assert service.process is not None
        deadline = time.monotonic() + self.ready_timeout
        while not _answers(service.ready_url):
            status = service.process.poll()
            if status is not None:
                raise StackError(
                    f"{service.name} exited with status {status} while starting; the end of its log "
                    f"({service.log_path}):\n{service.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"{service.name} did not answer {service.ready_url} within {self.ready_timeout:.0f} s; "
                    f"the end of its log ({service.log_path}):\n{service.log_tail()}"
                )
            time.sleep(0.2)

    def watch(self, poll_seconds: float = 1.0) -> None:
        """Return when interrupted (KeyboardInterrupt, SystemExit from SIGTERM) .

        Raises:
            StackError: a service exited on its own.
        """
        while True:
            for service in self.services:
                assert service.process is not None
                status = service.process.poll()
                if status is not None:
                    raise StackError(
                        f"{service.name} exited with status {status}; the end of its log "
                        f"({service.log_path}):\n{service.log_tail()}"
                    )
            time.sleep(poll_seconds)

    def stop(self) -> None:
        """Stop the services that run, last started first: SIGTERM, then SIGKILL after a grace period."""
        for service in reversed(self.services):
            process = service.process
            if process is None or process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in self._logs:
            log.close()
