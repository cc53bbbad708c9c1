"""The wheels shipped to hosts: fleetscope's wheel and one wheel for each of its dependencies.

Hosts of a GPU cluster often reach no package index, so the operator's machine builds every wheel
(``pip wheel``), the installer copies them, and hosts install with ``pip install --no-index
--find-links``. Wheels of compiled dependencies (``pydantic-core``, ``psutil``) are built for one
Python version and platform: those of the operator's Python, unless the wheelhouse was made for the
hosts' with ``pip download --only-binary=:all: --python-version X.Y --platform TAG``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import fleetscope


class WheelhouseError(RuntimeError):
    """A wheelhouse that cannot be built or used; the message says why."""


# Wheel file names: {name}-{version}(-{build})?-{python tag}-{abi tag}-{platform tag}.whl (PEP 427).
_CPYTHON_TAG = re.compile(r"^cp3(\d+)$")


@dataclass(frozen=True)
class Wheelhouse:
    """A folder of wheels holding exactly one fleetscope wheel.

    Attributes:
        path: the folder.
        version: the fleetscope version its wheel installs (e.g. ``0.1.0``).
        wheels: every ``.whl`` file in it, sorted.
        python: ``3.11`` where a compiled wheel pins a CPython version, else None (pure Python).
    """

    path: Path
    version: str
    wheels: tuple[Path, ...]
    python: str | None


def open_wheelhouse(path: Path) -> Wheelhouse:
    """Read a wheelhouse folder.

    Raises:
        WheelhouseError: the folder is missing, or holds no fleetscope wheel or more than one, or
            wheels for more than one CPython version.
    """
    if not path.is_dir():
        raise WheelhouseError(f"wheelhouse {path} is not a folder")
    wheels = tuple(sorted(path.glob("*.whl")))
    ours = [w for w in wheels if w.name.split("-")[0].lower() == "fleetscope"]
    if len(ours) != 1:
        found = ", ".join(w.name for w in ours) or "none"
        raise WheelhouseError(f"wheelhouse {path} must hold exactly one fleetscope wheel (found: {found})")
    pythons = set()
    for wheel in wheels:
        parts = wheel.stem.split("-")
        if parts[-2] == "abi3":
            continue  # the stable ABI: cp36-abi3 runs on CPython 3.6 and every later version
        for tag in parts[-3].split("."):
            match = _CPYTHON_TAG.match(tag)
            if match:
                pythons.add(f"3.{match.group(1)}")
    if len(pythons) > 1:
        raise WheelhouseError(f"wheelhouse {path} mixes wheels for Python {', '.join(sorted(pythons))}")
    return Wheelhouse(path, ours[0].name.split("-")[1], wheels, pythons.pop() if pythons else None)


def default_source() -> str:
    """What to build fleetscope's wheel from: the source tree of the running fleetscope (a clone, or
    an editable install), else the same version from the package index (``fleetscope==VERSION``)."""
    root = Path(fleetscope.__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(r'(?m)^name\s*=\s*"fleetscope"', pyproject.read_text()):
        return str(root)
    return f"fleetscope=={fleetscope.__version__}"


def build_wheelhouse(dest: Path, source: str | None = None, *, build_isolation: bool = True) -> Wheelhouse:
    """Build fleetscope's wheel and its dependencies' wheels into ``dest`` with ``pip wheel``.

    Args:
        dest: folder to fill (created; wheels already there are reused by pip).
        source: a source tree or a requirement; :func:`default_source` when None.
        build_isolation: False builds fleetscope with the setuptools already installed (no download).

    Raises:
        WheelhouseError: pip failed (its last error line is in the message).
    """
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]
    if not build_isolation:
        command.append("--no-build-isolation")
    command += ["--wheel-dir", str(dest), source or default_source()]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise WheelhouseError(f"pip wheel failed: {lines[-1] if lines else f'exit {done.returncode}'}")
    return open_wheelhouse(dest)
