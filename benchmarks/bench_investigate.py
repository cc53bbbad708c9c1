"""Throughput of ``fleetscope investigate`` on a generated bundle of real line shapes.

Generates a bundle of about ``--mb`` MB (default 1024) in a temporary folder: four nodes, each with a
kernel log, a training log (launcher prefixes, NCCL INFO, step lines, Python logging) and a dcgm-exporter
scrape, with the line shapes of fleetscope/examples/incidents and one real fault (an Xid 79) buried in the
middle. Runs the investigation in this process on one core and prints a table: MB, seconds, MB/s (wall
clock), MB per CPU second, peak RSS.

    python -m benchmarks.bench_investigate --mb 256
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from fleetscope.collectors import investigate

KERNEL = [
    "[{t:>12.6f}] IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready",
    "[{t:>12.6f}] nvidia-uvm: Loaded the UVM driver, major device number 508.",
    '[{t:>12.6f}] audit: type=1400 audit(1700000000.123:45): apparmor="STATUS" operation="profile_load"',
    "[{t:>12.6f}] EXT4-fs (nvme0n1p1): mounted filesystem with ordered data mode. Quota mode: none.",
    "[{t:>12.6f}] mlx5_core 0000:0c:00.0: mlx5_pcie_event:301:(pid 12): PCIe slot advertised sufficient "
    "power",
]
TRAIN = [
    "[1,{r}]<stdout>:node-0{n}:2231:2231 [{d}] NCCL INFO Channel 0{d}/0 : {r}[{d}] -> {r2}[{d}] via P2P/IPC",
    "[1,{r}]<stdout>:node-0{n}:2231:2290 [{d}] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB ; "
    "OOB eth0:10.0.0.{n}<0>",
    "[default{d}]:2024-11-06 21:{m:02d}:38,123 - INFO - trainer - step {s} loss=2.{s4:04d} lr=3.0e-04 "
    "tok/s=412345",
    "[default{d}]:[2024-11-06 21:{m:02d}:38] iteration {s}/ 500000 | consumed samples: {s} | "
    "elapsed time per iteration (ms): 1043.{s3:03d} | learning rate: 3.000E-04 | loss scale: 1.0 |",
    "[rank{r}]:[W ProcessGroupNCCL.cpp:1234] Warning: 'TORCH_NCCL_ASYNC_ERROR_HANDLING' is deprecated",
    "[default{d}]:  warnings.warn(  # the same deprecation, printed once per rank",
]
FAULT = "[{t:>12.6f}] NVRM: Xid (PCI:0000:3b:00): 79, pid=3318842, name=python, GPU has fallen off the bus."


def _block(kind: str, node: int, start: int, lines: int) -> str:
    out = []
    for i in range(start, start + lines):
        if kind == "kernel":
            out.append(KERNEL[i % len(KERNEL)].format(t=i * 0.0137))
        else:
            d = i % 8
            out.append(
                TRAIN[i % len(TRAIN)].format(
                    r=8 * node + d,
                    r2=8 * node + (d + 1) % 8,
                    n=node,
                    d=d,
                    s=i,
                    s3=i % 1000,
                    s4=i % 10000,
                    m=i % 60,
                )
            )
    return "\n".join(out) + "\n"


def generate(root: Path, megabytes: int) -> int:
    """Write the bundle; return its size in bytes."""
    per_file = megabytes * (1 << 20) // 8
    total = 0
    for node in range(1, 5):
        folder = root / f"node-0{node}"
        folder.mkdir(parents=True)
        for kind, name in (("kernel", "dmesg.log"), ("train", "train.log")):
            block = _block(kind, node, 0, 20000)
            with (folder / name).open("w") as fh:
                written = 0
                while written < per_file:
                    if kind == "kernel" and node == 3 and written >= per_file // 2 > written - len(block):
                        fh.write(FAULT.format(t=99999.0) + "\n")
                    fh.write(block)
                    written += len(block)
                total += written
        (folder / "metrics.prom").write_text(
            "# TYPE DCGM_FI_DEV_ECC_SBE_VOL_TOTAL counter\n"
            + "".join(
                f'DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{{gpu="{g}",pci_bus_id="00000000:{0x18 + g:02X}:00.0"}} 0\n'
                for g in range(8)
            )
        )
    return total


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, nargs="+", default=[1024], help="bundle sizes to run, in MB")
    args = ap.parse_args(argv)
    rows = []
    for mb in args.mb:
        with tempfile.TemporaryDirectory(prefix="fleetscope-bench-") as tmp:
            size = generate(Path(tmp), mb)
            start, cpu_start = time.perf_counter(), time.process_time()
            result = investigate(Path(tmp))
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            top = result.to_dict()["root_causes"][0]
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            mb = size / (1 << 20)
            rows.append((mb, seconds, mb / seconds, mb / cpu, peak_mb, top["kind"], top["node"]))
    # MB per CPU second is what one core gives when nothing else runs on it; MB/s (wall clock) drops on a
    # shared machine.
    print(f"{'MB':>8} {'seconds':>9} {'MB/s':>8} {'MB/CPU-s':>9} {'peak RSS MB':>12}  answer")
    for mb, seconds, rate, cpu_rate, rss, kind, node in rows:
        print(f"{mb:8.0f} {seconds:9.2f} {rate:8.1f} {cpu_rate:9.1f} {rss:12.0f}  {kind} on {node}")


if __name__ == "__main__":
    main()
