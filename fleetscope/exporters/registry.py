"""Collector registration: a collector is one file that registers itself (node_exporter's model).

Plug-in contract. A collector module in :mod:`fleetscope.exporters` (``gpu.py``, ``infiniband.py``, ...)
registers a factory at import time::

    @register(
        "infiniband",
        "InfiniBand and EFA port counters from /sys/class/infiniband.",
        settings=(Setting("device_include", str, "", "Regex of device names to read; empty: all."),),
    )
    def _build(ctx: BuildContext) -> InfinibandCollector:
        return InfinibandCollector(ctx.config.path_sysfs, device_include=ctx.setting("device_include"))

Everything else comes from that one registration:

* the config field ``collector_<name>`` (bool, the registered default) and one field
  ``<name>_<key>`` per :class:`Setting`, in :class:`~fleetscope.exporters.config.ExporterConfig` and so
  in the YAML file;
* the environment variables ``FLEETSCOPE_EXPORTER_<FIELD>`` (upper case);
* the flags ``--collector.<name>`` / ``--no-collector.<name>`` and ``--collector.<name>.<flag>``, and
  their lines in ``fleetscope exporter --help``.

The factory gets a :class:`BuildContext` and returns a source collector (see
:mod:`fleetscope.exporters.scrape` for what it must implement). It may raise only for a bad setting
(``ValueError`` with a message naming it); missing hardware is reported at scrape time instead. A
collector that needs a thread may define ``start()`` (called once the server runs) and ``close()``
(called on stop). :func:`registrations` imports every module of the package, so a new file is found
without being listed anywhere.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "FLEETSCOPE_EXPORTER_"


@dataclass(frozen=True)
class Setting:
    """One setting of a collector.

    Attributes:
        key: Config suffix; the field is ``<collector>_<key>`` (``timeout_seconds``).
        type: ``str``, ``int``, ``float`` or ``bool``.
        default: Default value (laptop-safe).
        help: One line for ``--help``.
        flag: Flag suffix after ``--collector.<collector>.``; default ``key`` with dashes.
        ge: Lower bound for numbers, inclusive.
        le: Upper bound for numbers, inclusive.
        metavar: Placeholder shown in ``--help``.
    """

    key: str
    type: type[Any]
    default: Any
    help: str
    flag: str | None = None
    ge: float | None = None
    le: float | None = None
    metavar: str | None = None

    def flag_name(self, collector: str) -> str:
        """The command-line flag, ``--collector.<collector>.<flag>``."""
        return f"--collector.{collector}.{self.flag or self.key.replace('_', '-')}"


@dataclass(frozen=True)
class BuildContext:
    """What a factory gets.

    Attributes:
        name: The collector's registered name.
        config: The whole validated exporter configuration.
        nvml: The NVML module (``pynvml``, or the tests' fake).
        built: Collectors built before this one, by name (those in the registration's ``needs``).
    """

    name: str
    config: Any
    nvml: Any
    built: dict[str, Any] = field(default_factory=dict)

    def setting(self, key: str) -> Any:
        """This collector's setting ``key`` (the config field ``<name>_<key>``)."""
        return getattr(self.config, f"{self.name}_{key}")


@dataclass(frozen=True)
class Registration:
    """A registered collector.

    Attributes:
        name: Value of the ``collector`` label and of the flag names.
        help: One line for ``--help``.
        default: Whether it runs when nothing says otherwise.
        settings: Its settings.
        build: The factory.
        needs: Collectors to build first; the factory finds them (or ``None`` when disabled) in
            ``ctx.built``.
    """

    name: str
    help: str
    default: bool
    settings: tuple[Setting, ...]
    build: Callable[[BuildContext], Any]
    needs: tuple[str, ...] = ()

    @property
    def field(self) -> str:
        """Config field that turns the collector on or off."""
        return f"collector_{self.name}"


_REGISTRY: dict[str, Registration] = {}
_NOT_COLLECTORS = frozenset(
    {"config", "metrics", "registry", "scrape", "server", "pci", "podresources", "web"}
)


def register(
    name: str,
    help: str,
    *,
    default: bool = True,
    settings: tuple[Setting, ...] = (),
    needs: tuple[str, ...] = (),
) -> Callable[[Callable[[BuildContext], Any]], Callable[[BuildContext], Any]]:
    """Register a collector factory (a decorator; see the module docstring).

    Raises:
        ValueError: The name is taken by another factory or is not a lower-case identifier.
    """
    if not name.isidentifier() or name != name.lower():
        raise ValueError(f"collector name must be a lower-case identifier, got {name!r}")

    def decorate(build: Callable[[BuildContext], Any]) -> Callable[[BuildContext], Any]:
        previous = _REGISTRY.get(name)
        if previous is not None and previous.build.__qualname__ != build.__qualname__:
            raise ValueError(f"collector {name!r} is registered twice")
        _REGISTRY[name] = Registration(name, help, default, settings, build, needs)
        return build

    return decorate


def registrations() -> list[Registration]:
    """Every registered collector, in build order (a collector after those it needs), then by name.

    Imports each module of :mod:`fleetscope.exporters` first, so that each registers itself.
    """
    package = importlib.import_module("fleetscope.exporters")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _NOT_COLLECTORS and not module.name.startswith("_"):
            importlib.import_module(f"fleetscope.exporters.{module.name}")
    ordered: list[Registration] = []
    pending = sorted(_REGISTRY.values(), key=lambda r: r.name)
    while pending:
        ready = [r for r in pending if all(n in {o.name for o in ordered} for n in r.needs)]
        if not ready:
            raise ValueError(f"collectors with unknown or circular needs: {[r.name for r in pending]}")
        ordered.extend(ready)
        pending = [r for r in pending if r not in ready]
    return ordered


def env_name(field: str) -> str:
    """Environment variable of a config field: ``FLEETSCOPE_EXPORTER_<FIELD>``."""
    return ENV_PREFIX + field.upper()
