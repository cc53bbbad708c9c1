"""``fleetscope install`` and ``fleetscope uninstall``: the command line over :mod:`fleetscope.install`.

A progress bar on stderr (on a terminal) while hosts are worked on, then one table row per host on
stdout. Exit codes: 0 every host ended as asked, 1 at least one did not, 2 usage errors (a bad host,
range, hosts file or wheelhouse).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from fleetscope.install import Host, HostResult, InstallSettings

_HostsArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="HOSTS...",
        help="[USER@]HOST[:SSH_PORT]; Slurm-style ranges, quoted for the shell: 'node-[01-64]', 'gpu[1-3]'.",
        show_default=False,
    ),
]
_HostsFileOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--hosts-file",
        "-f",
        metavar="FILE",
        help="One host or range per line (# comments); KEY=VALUE after it overrides prefix, "
        "exporter_port or python for that line. Repeatable.",
        show_default=False,
    ),
]
_PrefixOpt = Annotated[str, typer.Option("--prefix", metavar="DIR", help="Install root on each host.")]
_UserOpt = Annotated[
    str | None,
    typer.Option(
        "--user",
        "-l",
        help="SSH login (default: ~/.ssh/config, else your user name).",
        show_default=False,
        metavar="USER",
    ),
]
_IdentityOpt = Annotated[
    Path | None,
    typer.Option(
        "--identity",
        "-i",
        metavar="KEY",
        help="SSH private key (default: the agent and ~/.ssh keys).",
        show_default=False,
    ),
]
_KnownHostsOpt = Annotated[
    Path | None,
    typer.Option(
        "--known-hosts",
        metavar="FILE",
        help="known_hosts file; host keys are always checked (default ~/.ssh/known_hosts).",
        show_default=False,
    ),
]
_ParallelOpt = Annotated[
    int, typer.Option("--parallel", "-j", min=1, metavar="N", help="Hosts worked on at once.")
]
_FileSdOpt = Annotated[
    Path | None,
    typer.Option(
        "--file-sd",
        metavar="FILE",
        help="Prometheus file_sd JSON file to add the installed hosts' HOST:PORT to (removed by uninstall).",
        show_default=False,
    ),
]


def _fail(command: str, message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"fleetscope {command}: {message}", err=True)
    return typer.Exit(code)


def _hosts(command: str, specs: list[str] | None, files: list[Path] | None) -> list[Host]:
    from fleetscope.install import HostSpecError, collect_hosts

    try:
        return collect_hosts(specs or [], files or [])
    except HostSpecError as exc:
        raise _fail(command, str(exc)) from None


def _run_with_progress(
    hosts: list[Host],
    verb: str,
    job: Callable[[Callable[[Host, str], None]], Coroutine[Any, Any, list[HostResult]]],
) -> list[HostResult]:
    """Run ``job`` with a progress bar of finished hosts and the step each busy host is on."""
    import asyncio

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    steps: dict[str, str] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[busy]}"),
        console=Console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task(verb, total=len(hosts), busy="")

        def progress(host: Host, step: str) -> None:
            if step == "done":
                steps.pop(host.label, None)
                bar.advance(task)
            else:
                steps[host.label] = step
            counts: dict[str, int] = {}
            for name in steps.values():
                counts[name] = counts.get(name, 0) + 1
            bar.update(task, busy=", ".join(f"{n} {s}" for s, n in sorted(counts.items())))

        return asyncio.run(job(progress))


def _report(results: list[HostResult], file_sd: Path | None, file_sd_targets: list[str] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("host", "status", "version", "target", "detail", box=None, pad_edge=False)
    colours = {True: "green", False: "red"}
    for r in results:
        version = r.after or "-"
        table.add_row(
            r.host.label,
            f"[{colours[r.status.ok]}]{r.status.value}[/]",
            version,
            r.target or "-",
            r.detail,
        )
    out = Console(soft_wrap=True)
    out.print(table, highlight=False)
    failed = sum(not r.status.ok for r in results)
    summary = f"{len(results) - failed} of {len(results)} hosts ok"
    if file_sd is not None and file_sd_targets is not None:
        count = len(file_sd_targets)
        summary += f"; {file_sd} lists {count} target{'' if count == 1 else 's'}"
    out.print(summary, highlight=False)


def _settings(command: str, **values: Any) -> InstallSettings:
    from fleetscope.install import HostSpecError, InstallSettings
    from fleetscope.install.hosts import check_prefix

    try:
        values["prefix"] = check_prefix(values["prefix"])
    except HostSpecError as exc:
        raise _fail(command, str(exc)) from None
    return InstallSettings(**values)


def install_command(
    hosts: _HostsArg = None,
    hosts_file: _HostsFileOpt = None,
    wheelhouse: Annotated[
        Path | None,
        typer.Option(
            "--wheelhouse",
            metavar="DIR",
            help="Folder with the fleetscope wheel and its dependencies' wheels (pip wheel -w DIR .). "
            "Default: build one now with pip wheel, from this fleetscope's source tree or, for an "
            "installed release, from the package index.",
            show_default=False,
        ),
    ] = None,
    prefix: _PrefixOpt = "/opt/fleetscope",
    exporter_port: Annotated[
        int, typer.Option("--exporter-port", min=1, max=65535, metavar="PORT", help="Exporter port.")
    ] = 9847,
    exporter_bind: Annotated[
        str,
        typer.Option(
            "--exporter-bind",
            metavar="ADDRESS",
            help="Address the exporter listens on (default: every interface).",
        ),
    ] = "",
    python: Annotated[
        str,
        typer.Option(
            "--python", metavar="PATH", help="Python 3.11+ on the hosts that makes the virtual environment."
        ),
    ] = "python3",
    user: _UserOpt = None,
    identity: _IdentityOpt = None,
    known_hosts: _KnownHostsOpt = None,
    parallel: _ParallelOpt = 32,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=1,
            metavar="SECONDS",
            help="How long a started exporter has to answer on /metrics.",
        ),
    ] = 60.0,
    file_sd: _FileSdOpt = None,
) -> None:
    """Install the exporter on hosts over SSH, upgrade it in place, or leave it as it is.

    The hosts need no package index: this machine builds every wheel and copies them. Each host gets
    a virtual environment under PREFIX/releases/VERSION, a systemd unit (fleetscope-exporter.service)
    where systemd runs and the login is root, else a supervised process with a pid file; then this
    machine checks http://HOST:PORT/metrics. A host already at this version is left alone; one at
    another version is upgraded, and rolled back if the new exporter does not answer in time.

    Example: fleetscope install 'node-[01-64]' -l root --file-sd /etc/prometheus/fleetscope.json

    Exit codes: 0 every host installed, upgraded or unchanged; 1 some host failed, could not be
    reached or was rolled back (the table says which; the others are done); 2 usage error.
    """
    import tempfile

    from fleetscope.install import WheelhouseError, build_wheelhouse, install_hosts, open_wheelhouse

    targets = _hosts("install", hosts, hosts_file)
    settings = _settings(
        "install",
        prefix=prefix,
        exporter_port=exporter_port,
        exporter_bind=exporter_bind,
        python=python,
        user=user,
        identity=identity,
        known_hosts=known_hosts,
        parallel=parallel,
        metrics_timeout=timeout,
    )
    with tempfile.TemporaryDirectory(prefix="fleetscope-wheels-") as scratch:
        try:
            if wheelhouse is not None:
                house = open_wheelhouse(wheelhouse)
            else:
                typer.echo("fleetscope install: building wheels with pip wheel ...", err=True)
                house = build_wheelhouse(Path(scratch))
        except WheelhouseError as exc:
            raise _fail("install", str(exc)) from None
        results = _run_with_progress(
            targets,
            f"installing fleetscope {house.version}",
            lambda progress: install_hosts(targets, house, settings, progress),
        )
    _finish("install", results, file_sd, add=True)


def uninstall_command(
    hosts: _HostsArg = None,
    hosts_file: _HostsFileOpt = None,
    prefix: _PrefixOpt = "/opt/fleetscope",
    exporter_port: Annotated[
        int,
        typer.Option(
            "--exporter-port",
            min=1,
            max=65535,
            help="Exporter port, to name the targets in --file-sd.",
            metavar="PORT",
        ),
    ] = 9847,
    user: _UserOpt = None,
    identity: _IdentityOpt = None,
    known_hosts: _KnownHostsOpt = None,
    parallel: _ParallelOpt = 32,
    file_sd: _FileSdOpt = None,
) -> None:
    """Stop the exporter and remove everything `fleetscope install` put on the hosts.

    Removes the systemd unit (disabled first) or the supervised process, and the whole PREFIX, which
    must hold the installer's marker file (a prefix that does not is left alone).

    Example: fleetscope uninstall 'node-[01-64]' -l root --file-sd /etc/prometheus/fleetscope.json

    Exit codes: 0 every host uninstalled or had nothing installed; 1 some host failed or could not be
    reached; 2 usage error.
    """
    from fleetscope.install import uninstall_hosts

    targets = _hosts("uninstall", hosts, hosts_file)
    settings = _settings(
        "uninstall",
        prefix=prefix,
        exporter_port=exporter_port,
        user=user,
        identity=identity,
        known_hosts=known_hosts,
        parallel=parallel,
    )
    results = _run_with_progress(
        targets, "uninstalling fleetscope", lambda progress: uninstall_hosts(targets, settings, progress)
    )
    _finish("uninstall", results, file_sd, add=False)


def _finish(command: str, results: list[HostResult], file_sd: Path | None, *, add: bool) -> None:
    from fleetscope.install import update_file_sd

    listed = None
    if file_sd is not None:
        # After uninstall, a result's target is the one it removed.
        targets = [r.target for r in results if r.target and r.status.ok]
        try:
            listed = update_file_sd(file_sd, add=targets) if add else update_file_sd(file_sd, remove=targets)
        except (OSError, ValueError) as exc:
            _report(results, None, None)
            raise _fail(command, f"cannot update {file_sd}: {exc}", 1) from None
    _report(results, file_sd, listed)
    raise typer.Exit(0 if all(r.status.ok for r in results) else 1)
