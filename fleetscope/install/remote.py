"""What the installer runs and writes on a host: POSIX ``sh`` scripts and the service definitions.

Layout under the prefix (default ``/opt/fleetscope``)::

    .fleetscope-install        marker: uninstall removes a prefix only where this file exists
    releases/VERSION/venv/     one virtual environment per installed version
    current -> releases/VERSION
    staging/                   the uploaded wheels, removed once installed
    bin/supervise              the supervisor script (hosts without systemd)
    run/exporter.pid           the supervisor's pid (hosts without systemd)
    log/exporter.log           the exporter's output (hosts without systemd)

Where systemd runs (``/run/systemd/system`` exists, as ``sd_booted(3)`` checks) and the login is root,
the exporter is the unit ``fleetscope-exporter.service`` in ``/etc/systemd/system``; otherwise the
supervisor script restarts it whenever it exits and writes its own pid file. Both run the exporter
through the ``current`` link, so switching versions changes no service definition.

Each script takes its values as quoted shell assignments at its top and is fed to ``sh -s`` on
standard input, so no value is ever parsed by the login shell.
"""

from __future__ import annotations

import shlex

#: systemd unit name of the exporter.
UNIT = "fleetscope-exporter.service"
#: Where the unit file goes.
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
#: Marker file in the prefix; its presence is what lets uninstall delete the prefix.
MARKER = ".fleetscope-install"
#: How the supervisor's own lines in ``log/exporter.log`` start (the rest is the exporter's output).
SUPERVISOR_TAG = "fleetscope-supervise:"
#: Seconds the supervisor waits before restarting an exporter that exited.
RESTART_DELAY_SECONDS = 2


def _assign(**values: str | int) -> str:
    return "".join(f"{name}={shlex.quote(str(value))}\n" for name, value in values.items())


def exporter_command(prefix: str, bind: str, port: int) -> str:
    """The exporter's command line on the host, through the ``current`` link."""
    return shlex.join(
        [f"{prefix}/current/venv/bin/fleetscope", "exporter", "--web.listen-address", f"{bind}:{port}"]
    )


def systemd_unit(prefix: str, bind: str, port: int) -> str:
    """The unit file text (``systemd.service(5)``): restarts the exporter whenever it exits."""
    return (
        "# Written by `fleetscope install`; `fleetscope uninstall` removes it.\n"
        "[Unit]\n"
        "Description=fleetscope exporter: GPU and host metrics for Prometheus\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        f"ExecStart={exporter_command(prefix, bind, port)}\n"
        "Restart=always\n"
        f"RestartSec={RESTART_DELAY_SECONDS}\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def supervisor_script(prefix: str, bind: str, port: int) -> str:
    """The supervisor for hosts without systemd: writes its pid file, restarts the exporter when it
    exits. Started in its own session, so stopping it is one signal to its process group."""
    pid_file = shlex.quote(f"{prefix}/run/exporter.pid")
    return (
        "#!/bin/sh\n"
        "# Written by `fleetscope install`: keeps the fleetscope exporter running on a host without\n"
        '# systemd. Stop it (and the exporter) with: kill -TERM -- -"$(cat PIDFILE)".\n'
        f"echo $$ > {pid_file}.tmp && mv {pid_file}.tmp {pid_file}\n"
        "while :; do\n"
        f"    {exporter_command(prefix, bind, port)}\n"
        f'    echo "{SUPERVISOR_TAG} $(date -u +%Y-%m-%dT%H:%M:%SZ) the exporter exited with status $?;'
        f' restarting in {RESTART_DELAY_SECONDS} s"\n'
        f"    sleep {RESTART_DELAY_SECONDS}\n"
        "done\n"
    )


def probe(prefix: str, python: str) -> str:
    """Prints ``key=value`` lines: uid, systemd, python (``3.11``), machine, current (version),
    running (1/0), service (sha256 of the service definition in use)."""
    return _assign(P=prefix, PY=python, UNIT=UNIT, UNIT_PATH=UNIT_PATH) + (
        'echo "uid=$(id -u)"\n'
        "if [ -d /run/systemd/system ]; then echo systemd=1; else echo systemd=0; fi\n"
        '"$PY" -c \'import platform, sys; print("python=%d.%d" % sys.version_info[:2]);'
        ' print("machine=" + platform.machine())\' 2>/dev/null || echo python=\n'
        'link=$(readlink "$P/current" 2>/dev/null || true)\n'
        'if [ -n "$link" ] && [ -x "$P/current/venv/bin/fleetscope" ]; then echo "current=${link#releases/}";'
        " else echo current=; fi\n"
        "running=0\n"
        'if [ -f "$P/bin/supervise" ]; then\n'
        '    echo "service=$(sha256sum < "$P/bin/supervise" | cut -d" " -f1)"\n'
        '    pid=$(cat "$P/run/exporter.pid" 2>/dev/null || true)\n'
        '    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && running=1\n'
        'elif [ -f "$UNIT_PATH" ]; then\n'
        '    echo "service=$(sha256sum < "$UNIT_PATH" | cut -d" " -f1)"\n'
        '    systemctl is-active --quiet "$UNIT" && running=1\n'
        "fi\n"
        'echo "running=$running"\n'
    )


def prepare_staging(prefix: str) -> str:
    """Makes an empty ``staging/`` for the wheels (and the prefix, the first time)."""
    return _assign(P=prefix) + 'set -eu\nrm -rf "$P/staging"\nmkdir -p "$P/staging"\n'


def install_release(prefix: str, python: str, version: str) -> str:
    """Creates ``releases/VERSION/venv`` and installs fleetscope into it from ``staging/`` only
    (``pip --no-index``: the host needs no package index), then removes ``staging/``; on failure it
    removes the half-made release too, and pip's error is the last line on stderr."""
    return _assign(P=prefix, PY=python, V=version) + (
        'R="$P/releases/$V"\n'
        'rm -rf "$R" && mkdir -p "$P/releases" || exit 1\n'
        'if "$PY" -m venv "$R/venv" && "$R/venv/bin/python" -m pip install --quiet --no-index'
        ' --disable-pip-version-check --no-input --find-links "$P/staging" "fleetscope==$V"; then\n'
        '    rm -rf "$P/staging"\n'
        "else\n"
        '    rm -rf "$R" "$P/staging"\n'
        "    exit 1\n"
        "fi\n"
    )


def stop(prefix: str, systemd: bool) -> str:
    """Stops the exporter (both kinds of service, whichever exists); succeeds when none runs."""
    return _assign(P=prefix, UNIT=UNIT, UNIT_PATH=UNIT_PATH, SYSTEMD=int(systemd)) + (
        'if [ "$SYSTEMD" = 1 ] && [ -f "$UNIT_PATH" ]; then systemctl stop "$UNIT"; fi\n'
        'pid=$(cat "$P/run/exporter.pid" 2>/dev/null || true)\n'
        'if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then\n'
        # "-PID" is the supervisor's process group: it and the exporter (dash's kill takes no "--").
        '    kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid"\n'
        "    i=0\n"
        '    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done\n'
        '    kill -KILL "-$pid" 2>/dev/null || true\n'
        "fi\n"
        'rm -f "$P/run/exporter.pid"\n'
    )


def start(prefix: str, systemd: bool) -> str:
    """Starts the exporter: ``systemctl enable`` and ``restart`` of the unit, or the supervisor in a
    session of its own with its output appended to ``log/exporter.log``."""
    if systemd:
        return (
            _assign(UNIT=UNIT)
            + 'set -eu\nsystemctl daemon-reload\nsystemctl enable --quiet "$UNIT"\n'
            + ('systemctl restart "$UNIT"\n')
        )
    return _assign(P=prefix) + (
        "set -eu\n"
        'mkdir -p "$P/run" "$P/log"\n'
        'setsid sh "$P/bin/supervise" >> "$P/log/exporter.log" 2>&1 < /dev/null &\n'
        "i=0\n"
        'while [ ! -s "$P/run/exporter.pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done\n'
        '[ -s "$P/run/exporter.pid" ] || { echo "the supervisor did not start" >&2; exit 1; }\n'
    )


def switch(prefix: str, version: str) -> str:
    """Points ``current`` at ``releases/VERSION`` in one rename, so it is never missing."""
    return _assign(P=prefix, V=version) + (
        'set -eu\nln -sfn "releases/$V" "$P/current.new"\nmv -T "$P/current.new" "$P/current"\n'
    )


def remove_release(prefix: str, version: str) -> str:
    """Deletes ``releases/VERSION`` unless ``current`` points at it."""
    return _assign(P=prefix, V=version) + (
        'if [ "$(readlink "$P/current" 2>/dev/null)" != "releases/$V" ]; then rm -rf "$P/releases/$V"; fi\n'
    )


def prune_releases(prefix: str) -> str:
    """Deletes every release but the current one."""
    return _assign(P=prefix) + (
        'cur=$(readlink "$P/current" 2>/dev/null || true)\n'
        'for r in "$P"/releases/*; do\n'
        '    [ -e "$r" ] || continue\n'
        '    [ "releases/${r##*/}" = "$cur" ] || rm -rf "$r"\n'
        "done\n"
    )


def log_tail(prefix: str, systemd: bool, lines: int = 20) -> str:
    """Prints the exporter's last output lines (its log file, or the unit's journal)."""
    if systemd:
        return _assign(UNIT=UNIT, N=lines) + 'journalctl -u "$UNIT" -n "$N" --no-pager -o cat 2>&1 || true\n'
    return _assign(P=prefix, N=lines) + 'tail -n "$N" "$P/log/exporter.log" 2>/dev/null || true\n'


def uninstall(prefix: str) -> str:
    """Stops and removes the exporter: the unit (disabled, deleted, systemd reloaded), the supervisor
    and the prefix. Exits 3 when the prefix holds no marker (nothing of ours to remove)."""
    return (
        stop(prefix, systemd=True)
        + _assign(MARKER=MARKER)
        + (
            'if [ -f "$UNIT_PATH" ]; then\n'
            '    systemctl disable --quiet "$UNIT" 2>/dev/null || true\n'
            '    rm -f "$UNIT_PATH"\n'
            "    systemctl daemon-reload 2>/dev/null || true\n"
            "fi\n"
            '[ -f "$P/$MARKER" ] || exit 3\n'
            'rm -rf "$P"\n'
        )
    )
