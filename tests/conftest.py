"""Suite-wide pytest set-up: the ``gpu`` marker runs only where NVML finds a GPU."""

from __future__ import annotations

import pytest


def _nvml_has_gpu() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return bool(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any("gpu" in item.keywords for item in items) and not _nvml_has_gpu():
        skip = pytest.mark.skip(reason="needs an NVIDIA GPU with a working driver (NVML)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
