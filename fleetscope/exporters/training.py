"""Training-step metrics: a hook the training loop calls once per step, and the collector that
aggregates the records per rank.

In the training process (it imports nothing heavy; torch only inside :meth:`TrainingHook.comm_hook`)::

    from fleetscope.exporters.training import TrainingHook

    hook = TrainingHook()                      # rank, world size and job id from torchrun/Slurm env
    ddp_model.register_comm_hook(None, hook.comm_hook)   # collective wait per step (optional)
    for batch in loader:
        with hook.step(samples=len(batch)) as step:     # data wait: time since the last step ended
            with step.phase("forward"):
                loss = ddp_model(batch)
            with step.phase("backward"):
                loss.backward()
            with step.phase("optimizer"):
                optimizer.step()
            step.loss = float(loss)

Transport: one Unix datagram per step to the exporter's socket (``training_socket``, default
:data:`DEFAULT_SOCKET`, or ``FLEETSCOPE_TRAINING_SOCKET``), sent non-blocking: if the exporter is down,
slow or its queue full, the record is dropped and counted (:attr:`TrainingHook.dropped`, sent along with
the next record that arrives). Nothing in the hook blocks or raises into training: every error is caught.
When an OTLP endpoint is configured (``otlp_endpoint`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``) and the
``opentelemetry-sdk`` is installed, each step is also an OpenTelemetry span with one child per phase,
exported in the SDK's background thread.

Record (little-endian ``struct`` :data:`RECORD`): magic, version, step, rank, local rank, world size,
step seconds, the five phase seconds (:data:`PHASES`), samples, tokens, loss (NaN: none), records
dropped so far, then the job id (UTF-8, at most 64 bytes).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import Metric

from fleetscope.exporters.metrics import Histogram, MetricSpec, add
from fleetscope.exporters.registry import BuildContext, Setting, register
from fleetscope.exporters.scrape import SourceUnavailable

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/tmp/fleetscope-training.sock"
"""Where the hook sends and the exporter listens unless told otherwise; on a shared cluster node prefer
a directory only the job's users can write (``/run/fleetscope/training.sock``)."""
ENV_SOCKET = "FLEETSCOPE_TRAINING_SOCKET"
PHASES = ("data_wait", "forward", "backward", "optimizer", "collective_wait")
RECORD = struct.Struct("<4sHqiii9dQ")
_MAGIC = b"FSTR"
_VERSION = 1
_MAX_JOB_ID = 64
_NO_TIME = (0.0,) * len(PHASES)


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return default


_clock = time.perf_counter


class _Phase:
    """Times one phase of a step into the step's phase list; reused, so entering allocates nothing."""

    __slots__ = ("_index", "_phases", "_start")

    def __init__(self, phases: list[float], index: int) -> None:
        self._phases, self._index, self._start = phases, index, 0.0

    def __enter__(self) -> None:
        self._start = _clock()

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        # Named parameters, not *exc: no tuple is built on the training thread.
        self._phases[self._index] += _clock() - self._start


class _Phases(dict[str, Any]):
    """Phase name -> its :class:`_Phase`; an unknown name times nothing."""

    def __missing__(self, name: str) -> contextlib.nullcontext[None]:
        return _UNTIMED


_UNTIMED: contextlib.nullcontext[None] = contextlib.nullcontext()


class StepTimer:
    """One step in progress; a context manager that :meth:`TrainingHook.step` returns and that queues the
    step's record when its block ends.

    Attributes:
        phase: ``phase(name)`` times one phase, as a context manager: ``forward``, ``backward``,
            ``optimizer`` (any name of :data:`PHASES`); an unknown name times nothing. It is the phase
            table's own C lookup, so naming a phase runs no Python code on the training thread.
        loss: Set it when known; NaN: none.
        phases: Seconds per phase of the step so far, in :data:`PHASES` order.
    """

    __slots__ = ("_hook", "_last_end", "loss", "phase", "phases", "samples", "start", "tokens")

    def __init__(self, hook: TrainingHook) -> None:
        self._hook = hook
        self._last_end: float | None = None
        self.samples, self.tokens, self.loss, self.start = 0.0, 0.0, math.nan, 0.0
        self.phases = [0.0] * len(PHASES)
        self.phase: Callable[[str], contextlib.AbstractContextManager[None]] = _Phases(
            {name: _Phase(self.phases, i) for i, name in enumerate(PHASES)}
        ).__getitem__

    def __enter__(self) -> StepTimer:
        self.start = start = _clock()
        phases = self.phases
        phases[:] = _NO_TIME
        if self._last_end is not None:
            phases[0] = start - self._last_end  # data wait: from the last step's end
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        end = _clock()
        phases, hook = self.phases, self._hook
        if hook._collective:
            with hook._collective_lock:
                phases[4] += hook._collective
                hook._collective = 0.0
        duration = end - self.start + phases[0]
        self._last_end = end
        hook._put(duration, phases, self.samples, self.tokens, self.loss, None)


class TrainingHook:
    """Sends one record per training step to the node exporter; never blocks, never raises.

    The training thread only appends the step's numbers, as one tuple, to a queue (a ``deque`` append,
    atomic under the GIL: no lock); a daemon thread packs and sends the queue every few milliseconds, so
    neither the packing nor the socket's system call runs on the training thread. A full queue, a
    missing socket, a refused send or a value that is not a number drops the record and counts it.

    Args:
        socket_path: The exporter's datagram socket; default ``FLEETSCOPE_TRAINING_SOCKET`` or
            :data:`DEFAULT_SOCKET`.
        rank: Global rank; default ``RANK`` (torchrun) or ``SLURM_PROCID``, else 0.
        local_rank: Rank on this node; default ``LOCAL_RANK`` or ``SLURM_LOCALID``, else 0.
        world_size: Default ``WORLD_SIZE`` or ``SLURM_NTASKS``, else 1.
        job_id: Default ``SLURM_JOB_ID``, ``TORCHELASTIC_RUN_ID``, else empty.
        otlp_endpoint: OTLP/HTTP endpoint for step spans; default ``OTEL_EXPORTER_OTLP_ENDPOINT``; empty
            for no spans.
    """

    QUEUE = 4096
    """Records held while the sender catches up; beyond it records are dropped and counted."""

    def __init__(
        self,
        socket_path: str | None = None,
        rank: int | None = None,
        local_rank: int | None = None,
        world_size: int | None = None,
        job_id: str | None = None,
        otlp_endpoint: str | None = None,
    ) -> None:
        self.socket_path = socket_path or os.environ.get(ENV_SOCKET) or DEFAULT_SOCKET
        self.rank = rank if rank is not None else _env_int(("RANK", "SLURM_PROCID"), 0)
        self.local_rank = (
            local_rank if local_rank is not None else _env_int(("LOCAL_RANK", "SLURM_LOCALID"), 0)
        )
        self.world_size = (
            world_size if world_size is not None else _env_int(("WORLD_SIZE", "SLURM_NTASKS"), 1)
        )
        job = (
            job_id
            if job_id is not None
            else os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID", "")
        )
        self._job = job.encode()[:_MAX_JOB_ID]
        # The record with this hook's job id as its tail, precompiled: one pack call per record.
        self._record = struct.Struct(f"{RECORD.format}{len(self._job)}s")
        self.sent = 0
        self._queued = 0  # records appended to the queue, counted on the training thread
        self._dropped_full = 0  # counted on the training thread
        self._dropped_send = 0  # counted on the sender thread
        self._step = 0
        self._collective = 0.0
        self._collective_lock = threading.Lock()
        # (step, duration, 5 phases, samples, tokens, loss) per record, appended by the training thread
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._stop = threading.Event()
        self._sender: threading.Thread | None = None
        self._timer = StepTimer(self)
        self._tracer = _tracer(
            otlp_endpoint if otlp_endpoint is not None else os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        )

    @property
    def dropped(self) -> int:
        """Records dropped so far (queue full, exporter down or refusing, not numbers)."""
        return self._dropped_full + self._dropped_send

    def flush(self, timeout: float = 1.0) -> None:
        """Wait up to ``timeout`` seconds for the queued records to be sent (or dropped).

        A record the sender has taken off the queue but not yet sent still counts as queued, so
        :attr:`sent` and :attr:`dropped` are final for every record queued before the call.
        """
        deadline = time.monotonic() + timeout
        while self.sent + self._dropped_send < self._queued and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> None:
        """Send what is queued (up to a second), then close the socket and flush spans, if any."""
        self.flush()
        self._stop.set()
        if self._sender is not None:
            self._sender.join(1)
        self._sock.close()
        if self._tracer is not None:
            with contextlib.suppress(Exception):
                self._tracer[1].shutdown()

    def step(self, samples: float = 0, tokens: float = 0) -> StepTimer:
        """Time one training step; the record is queued when the ``with`` block ends, even if it raises.

        Args:
            samples: Samples in this step (all of this rank's micro-batches).
            tokens: Tokens in this step, for language models.

        Returns:
            The :class:`StepTimer` (a context manager) whose ``phase(name)`` times phases.
        """
        timer = self._timer
        timer.samples, timer.tokens, timer.loss = samples, tokens, math.nan
        return timer

    def record(
        self,
        duration: float,
        phases: list[float] | None = None,
        samples: float = 0,
        tokens: float = 0,
        loss: float = math.nan,
        step: int | None = None,
    ) -> None:
        """Queue one step's record (the plain API: a loop that times itself calls this once per step).

        Args:
            duration: Step seconds, data wait included.
            phases: Seconds per phase in :data:`PHASES` order; missing ones are 0.
            samples: Samples in the step.
            tokens: Tokens in the step.
            loss: The step's loss; NaN for none.
            step: Step number; default one more than the last.
        """
        try:
            given = [*(phases or ())][: len(PHASES)]
        except TypeError:  # not a sequence: the record is dropped, never the step
            self._dropped_full += 1
            return
        self._put(duration, given + [0.0] * (len(PHASES) - len(given)), samples, tokens, loss, step)

    def _put(
        self,
        duration: float,
        phases: list[float],
        samples: float,
        tokens: float,
        loss: float,
        step: int | None,
    ) -> None:
        """Queue a record on the training thread: a counter, a tuple and a deque append, nothing more."""
        self._step = step = self._step + 1 if step is None else step
        if len(self._queue) >= self.QUEUE:
            self._dropped_full += 1
        else:
            p0, p1, p2, p3, p4 = phases
            self._queue.append((step, duration, p0, p1, p2, p3, p4, samples, tokens, loss))
            self._queued += 1
            if self._sender is None:
                self._start_sender()
        if self._tracer is not None:
            self._span(duration, list(phases))

    def _start_sender(self) -> None:
        try:
            self._sender = threading.Thread(target=self._send, name="fleetscope-training-hook", daemon=True)
            self._sender.start()
        except RuntimeError:  # no thread to be had (interpreter shutting down): records stay queued
            self._sender = None

    def _send(self) -> None:
        retry_at = 0.0
        pack = self._record.pack
        while not self._stop.wait(0.005):
            queue = self._queue
            while queue:
                step, duration, *numbers = queue.popleft()
                if time.monotonic() < retry_at:
                    self._dropped_send += 1
                    continue
                try:
                    data = pack(
                        _MAGIC, _VERSION, step, self.rank, self.local_rank, self.world_size, duration,
                        *numbers, self.dropped, self._job,
                    )  # fmt: skip
                except (struct.error, TypeError, ValueError):
                    self._dropped_send += 1  # not numbers (a tensor for samples ...): this record only
                    continue
                try:
                    self._sock.sendto(data, self.socket_path)
                    self.sent += 1
                except BlockingIOError:
                    self._dropped_send += 1  # the exporter's queue is full: it is behind, not gone
                except OSError:
                    # No exporter (ENOENT, ECONNREFUSED): drop for a second rather than fail each record.
                    self._dropped_send += 1
                    retry_at = time.monotonic() + 1.0

    # No annotations: DDP's register_comm_hook rejects any bucket or return annotation other than
    # dist.GradBucket and Future[Tensor], and naming those would import torch with this module.
    def comm_hook(self, state, bucket):
        """A DDP communication hook: all-reduce (average) the bucket, timing the wait for it.

        Register with ``ddp_model.register_comm_hook(state=None, hook=hook.comm_hook)``. The time from
        the bucket being ready to its all-reduce finishing is added to the step's ``collective_wait``.

        Args:
            state: The process group, or ``None`` for the default group.
            bucket: ``torch.distributed.GradBucket``.

        Returns:
            ``torch.futures.Future[torch.Tensor]`` of the averaged bucket.
        """
        import torch.distributed as dist

        start = time.perf_counter()
        group = state if state is not None else dist.group.WORLD
        tensor = bucket.buffer().div_(dist.get_world_size(group))
        future = dist.all_reduce(tensor, group=group, async_op=True).get_future()

        def done(fut: Any) -> Any:
            with self._collective_lock:
                self._collective += time.perf_counter() - start
            return fut.value()[0]

        return future.then(done)

    def _span(self, duration: float, phases: list[float]) -> None:
        try:
            tracer = self._tracer[0]  # type: ignore[index]
            end = time.time_ns()
            start = end - int(duration * 1e9)
            attributes = {"fleetscope.step": self._step, "fleetscope.rank": self.rank}
            span = tracer.start_span("training.step", start_time=start, attributes=attributes)
            offset = start
            for name, seconds in zip(PHASES, phases, strict=True):
                if seconds > 0:
                    child_end = offset + int(seconds * 1e9)
                    with contextlib.suppress(Exception):
                        context = _set_span_in_context(span)
                        tracer.start_span(name, context=context, start_time=offset).end(end_time=child_end)
                    offset = child_end
            span.end(end_time=end)
        except Exception:
            log.debug("training span dropped", exc_info=True)


def _set_span_in_context(span: Any) -> Any:
    from opentelemetry import trace

    return trace.set_span_in_context(span)


def _tracer(endpoint: str) -> tuple[Any, Any] | None:
    """(tracer, provider) exporting to an OTLP/HTTP endpoint, or ``None`` when not configured or the
    OpenTelemetry SDK or exporter is not installed."""
    if not endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTLP endpoint %s set, but opentelemetry-sdk/-exporter-otlp are not installed", endpoint)
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": "fleetscope-training"}))
    url = endpoint.rstrip("/") + ("" if endpoint.rstrip("/").endswith("/v1/traces") else "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    return provider.get_tracer("fleetscope.exporters.training"), provider


# ---------------------------------------------------------------- the exporter side

_RANK = ("rank",)
STEP_DURATION = MetricSpec(
    "fleetscope_training_step_duration_seconds",
    "histogram",
    "Wall time of a training step, data wait included, as the training hook measured it.",
    "training hook record",
    labels=_RANK,
)
PHASE_SECONDS = MetricSpec(
    "fleetscope_training_phase_seconds_total",
    "counter",
    "Seconds spent in each phase of the training steps (data_wait, forward, backward, optimizer, "
    "collective_wait from the DDP communication hook).",
    "training hook record",
    labels=(*_RANK, "phase"),
)
STEPS = MetricSpec(
    "fleetscope_training_steps_total",
    "counter",
    "Training steps recorded.",
    "training hook record",
    labels=_RANK,
)
SAMPLES = MetricSpec(
    "fleetscope_training_samples_total", "counter", "Samples processed.", "training hook record", labels=_RANK
)
TOKENS = MetricSpec(
    "fleetscope_training_tokens_total", "counter", "Tokens processed.", "training hook record", labels=_RANK
)
LOSS = MetricSpec(
    "fleetscope_training_loss",
    "gauge",
    "Loss of the last step that reported one.",
    "training hook record",
    labels=_RANK,
)
LAST_STEP = MetricSpec(
    "fleetscope_training_last_step_timestamp_seconds",
    "gauge",
    "Unix time the exporter received the rank's last step record (a stalled rank stops moving).",
    "training hook record",
    labels=_RANK,
)
STEP_NUMBER = MetricSpec(
    "fleetscope_training_step",
    "gauge",
    "Number of the rank's last step.",
    "training hook record",
    labels=_RANK,
)
RANK_INFO = MetricSpec(
    "fleetscope_training_rank_info",
    "gauge",
    "Rank identity, value 1: job id, local rank and world size from the hook (torchrun or Slurm "
    "environment).",
    "training hook record",
    labels=(*_RANK, "job_id", "local_rank", "world_size"),
)
HOOK_DROPPED = MetricSpec(
    "fleetscope_training_hook_dropped_records_total",
    "counter",
    "Records the rank's hook dropped before they reached the exporter (exporter down or its queue full).",
    "training hook record",
    labels=_RANK,
)
REJECTED = MetricSpec(
    "fleetscope_training_records_rejected_total",
    "counter",
    "Datagrams the exporter threw away: malformed, or from a rank beyond the per-node limit.",
    "training socket",
    labels=("reason",),
)
METRICS = (
    STEP_DURATION,
    PHASE_SECONDS,
    STEPS,
    SAMPLES,
    TOKENS,
    LOSS,
    LAST_STEP,
    STEP_NUMBER,
    RANK_INFO,
    HOOK_DROPPED,
    REJECTED,
)
STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass
class _Rank:
    job_id: str = ""
    local_rank: int = 0
    world_size: int = 1
    steps: int = 0
    step: int = 0
    samples: float = 0.0
    tokens: float = 0.0
    loss: float = math.nan
    last: float = 0.0
    hook_dropped: int = 0
    phases: list[float] = field(default_factory=lambda: [0.0] * len(PHASES))
    durations: Histogram = field(default_factory=lambda: Histogram(STEP_BUCKETS))


class TrainingCollector:
    """Receives the hooks' records on a Unix datagram socket and aggregates them per rank.

    Args:
        socket_path: Where to listen (created, mode 0666 so training jobs of any user can send).
        max_ranks: Most ranks kept per node; records of more are rejected and counted.
        clock: Wall clock for the last-step timestamp.
    """

    name = "training"
    from_memory = True  # collect() copies what the receiving thread aggregated

    def __init__(
        self, socket_path: str | Path = DEFAULT_SOCKET, max_ranks: int = 256, clock: Any = time.time
    ) -> None:
        self.socket_path = str(socket_path)
        self._max_ranks = max_ranks
        self._clock = clock
        self._ranks: dict[int, _Rank] = {}
        self._rejected = {"malformed": 0, "too_many_ranks": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.error: str | None = "not started"

    def start(self) -> TrainingCollector:
        """Bind the socket and start receiving in a daemon thread; returns ``self``."""
        self._thread = threading.Thread(target=self._run, name="training-receiver", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop receiving and remove the socket file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def _bind(self) -> socket.socket:
        path = Path(self.socket_path)
        if path.is_socket():
            path.unlink()  # left by an exporter that did not stop cleanly
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(self.socket_path)
        os.chmod(self.socket_path, 0o666)
        sock.settimeout(0.2)
        return sock

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock = self._bind()
            except OSError as exc:
                self._set_error(f"cannot listen on {self.socket_path}: {exc}")
                self._stop.wait(2.0)
                continue
            self._set_error(None)
            try:
                while not self._stop.is_set():
                    try:
                        data = sock.recv(RECORD.size + _MAX_JOB_ID)
                    except TimeoutError:
                        continue
                    self.feed(data)
            except OSError as exc:
                self._set_error(f"training socket {self.socket_path} failed: {exc}")
            finally:
                sock.close()
                with contextlib.suppress(OSError):
                    os.unlink(self.socket_path)

    def _set_error(self, error: str | None) -> None:
        if error != self.error and error is not None:
            log.warning("%s", error)
        self.error = error

    def feed(self, data: bytes) -> None:
        """Aggregate one record (the receiver thread calls this; tests and benchmarks may too)."""
        try:
            (magic, version, step, rank, local_rank, world_size, duration, *rest) = RECORD.unpack_from(data)
            phases, (samples, tokens, loss, dropped) = rest[:5], rest[5:]
            job = data[RECORD.size :].decode("utf-8")
            if (
                magic != _MAGIC
                or version != _VERSION
                or rank < 0
                or not math.isfinite(duration)
                or duration < 0
            ):
                raise ValueError("not a training record")
        except (struct.error, ValueError):
            with self._lock:
                self._rejected["malformed"] += 1
            return
        with self._lock:
            state = self._ranks.get(rank)
            if state is None:
                if len(self._ranks) >= self._max_ranks:
                    self._rejected["too_many_ranks"] += 1
                    return
                state = self._ranks[rank] = _Rank()
            state.job_id, state.local_rank, state.world_size = job, local_rank, world_size
            state.steps += 1
            state.step = step
            state.samples += max(samples, 0.0)
            state.tokens += max(tokens, 0.0)
            if math.isfinite(loss):
                state.loss = loss
            state.last = self._clock()
            state.hook_dropped = max(state.hook_dropped, int(dropped))
            for i, seconds in enumerate(phases):
                if math.isfinite(seconds) and seconds > 0:
                    state.phases[i] += seconds
            state.durations.observe(duration)

    def collect(self) -> Iterator[Metric]:
        """Yield the per-rank families.

        Raises:
            SourceUnavailable: The socket cannot be bound (after yielding what was received).
        """
        families = {spec.name: spec.family() for spec in METRICS}
        with self._lock:
            ranks = sorted(self._ranks.items())
            for reason, count in sorted(self._rejected.items()):
                add(families[REJECTED.name], [reason], float(count))
            for rank, state in ranks:
                label = [str(rank)]
                state.durations.add_to(families[STEP_DURATION.name], label)
                for phase, seconds in zip(PHASES, state.phases, strict=True):
                    add(families[PHASE_SECONDS.name], [*label, phase], seconds)
                add(families[STEPS.name], label, float(state.steps))
                add(families[SAMPLES.name], label, state.samples)
                add(families[TOKENS.name], label, state.tokens)
                if math.isfinite(state.loss):
                    add(families[LOSS.name], label, state.loss)
                add(families[LAST_STEP.name], label, state.last)
                add(families[STEP_NUMBER.name], label, float(state.step))
                add(
                    families[RANK_INFO.name],
                    [*label, state.job_id, str(state.local_rank), str(state.world_size)],
                    1.0,
                )
                add(families[HOOK_DROPPED.name], label, float(state.hook_dropped))
        for family in families.values():
            if family.samples:
                yield family
        if self.error is not None:
            raise SourceUnavailable(self.error)


@register(
    "training",
    "Training-step records from the fleetscope.exporters.training hook, per rank.",
    settings=(
        Setting(
            "socket", str, DEFAULT_SOCKET, "Unix datagram socket the training hooks send to.", metavar="PATH"
        ),
        Setting(
            "max_ranks",
            int,
            256,
            "Most ranks kept per node; records of more are counted and dropped.",
            ge=1,
            metavar="N",
            le=65536,
        ),
    ),
)
def _build(ctx: BuildContext) -> TrainingCollector:
    return TrainingCollector(ctx.setting("socket"), ctx.setting("max_ranks"))
