"""Real DDP training on CPU (torch.distributed, gloo) with the fleetscope training hook on.

Run an exporter, then the training, and watch per-rank step metrics appear::

    fleetscope exporter --collector.training.socket /tmp/fleetscope-training.sock &
    python -m fleetscope.examples.train_ddp --world-size 4 --steps 200
    curl -s localhost:9847/metrics | grep fleetscope_training_

Each rank trains a small MLP on generated regression data (a fixed random linear map plus noise, so the
loss falls), with the hook timing data wait, forward, backward, optimizer and, through the DDP
communication hook, the wait for each gradient all-reduce. Needs ``torch`` (``pip install
'fleetscope[training]'``); no GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def train(rank: int, world_size: int, steps: int, batch: int, port: int, socket_path: str | None) -> None:
    """One rank's training loop (runs in a process ``torch.multiprocessing`` started)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from fleetscope.exporters.training import TrainingHook

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.manual_seed(0)  # the same initial weights and target map on every rank
    target = torch.randn(32, 1)
    model = DistributedDataParallel(
        torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    )
    hook = TrainingHook(socket_path, rank=rank, local_rank=rank, world_size=world_size)
    model.register_comm_hook(state=None, hook=hook.comm_hook)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(1000 + rank)  # each rank its own shard of the data
    try:
        for _ in range(steps):
            with hook.step(samples=batch) as step:
                x = torch.randn(batch, 32, generator=generator)
                y = x @ target + 0.01 * torch.randn(batch, 1, generator=generator)
                with step.phase("forward"):
                    loss = torch.nn.functional.mse_loss(model(x), y)
                with step.phase("backward"):
                    optimizer.zero_grad()
                    loss.backward()
                with step.phase("optimizer"):
                    optimizer.step()
                step.loss = loss.item()
        hook.flush()
        if rank == 0:
            sent = f"records sent {hook.sent}, dropped {hook.dropped}"
            print(f"rank 0: {steps} steps, last loss {loss.item():.4f}, {sent}")
    finally:
        hook.close()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, default=2, help="processes (ranks), 2 to 4 on a laptop")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--port", type=int, default=29511, help="TCP port of the gloo rendezvous")
    parser.add_argument("--socket", default=None, help="the exporter's training socket")
    args = parser.parse_args(argv)
    if not 1 <= args.world_size <= 64 or args.steps < 1 or args.batch < 1:
        print("train_ddp: --world-size must be 1-64, --steps and --batch at least 1", file=sys.stderr)
        return 2
    try:
        import torch.multiprocessing as mp
    except ImportError:
        print("train_ddp: needs torch (in a clone: pip install -e '.[training]')", file=sys.stderr)
        return 1
    start = time.monotonic()
    mp.spawn(
        train, args=(args.world_size, args.steps, args.batch, args.port, args.socket), nprocs=args.world_size
    )
    print(f"{args.world_size} ranks, {args.steps} steps each, in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
