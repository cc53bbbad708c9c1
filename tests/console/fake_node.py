"""A node for the console's browser test: a real ``fleetscope`` exporter process on 127.0.0.1 whose GPUs
are the fake NVML (tests/exporters/fake_nvml.py) driven by a recorded 8 × H100 ``nvidia-smi`` capture.

Run as ``python -m tests.console.fake_node --port PORT --state DIR [--lose-gpu N]``; it serves until
SIGTERM. ``--lose-gpu`` makes that GPU raise NVML's GPU-is-lost error, as a GPU fallen off the bus does.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from tests.exporters.fake_nvml import FakeNvml
from tests.exporters.support import H100_X8, running_exporter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True, help="folder for the kernel log and socket")
    parser.add_argument("--lose-gpu", type=int, default=None)
    args = parser.parse_args()
    args.state.mkdir(parents=True, exist_ok=True)
    kernel_log = args.state / "kern.log"
    kernel_log.touch()
    nvml = FakeNvml.from_capture(H100_X8)
    if args.lose_gpu is not None:
        nvml.lose_gpu(args.lose_gpu)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with running_exporter(kernel_log, nvml, listen_address=f"127.0.0.1:{args.port}"):
        stop.wait()


if __name__ == "__main__":
    main()
