"""The asyncio load generator behind ``llm_load``: closed loop or open loop (Poisson arrivals).

Closed loop: ``concurrency`` workers each send a request as soon as their previous one ended.
Open loop: requests are sent at times drawn in advance from a Poisson process of ``rate`` per
second (exponential gaps from ``random.Random(seed)``), whatever the server's state; with
``concurrency`` as well, at most that many are in flight and the others wait for a slot.

Every request is timed like the harness times one generation (``perf_counter_ns`` before the
first ``__anext__`` of the backend's async stream, then at each item, then at its end) and
derived with :func:`~pytest_llmperf.harness.derive`, so TTFT, TPOT and ITL mean the same as in
``llm_bench``. The generator also measures itself: ``scheduled_ns`` is when a request was due
(its arrival time; in a closed loop, when its worker became free) and ``t0`` when it actually
started. Open loop with a ``concurrency`` cap, a request that arrives when every slot is taken
records ``slot_ns``, when it got one: that wait is the server's doing (the slots are full of
its requests), so the generator's own lag is ``t0 - max(scheduled_ns, slot_ns)`` and the slot
wait is reported apart. The event
loop sleeps to within ~1 ms of an arrival and then yields (``sleep(0)``) until it is due,
because ``epoll`` rounds timeouts up to whole milliseconds; that spin keeps the core busy by
design, so its wall and CPU time are measured and left out of ``cpu_share``.

A request whose ``prefix_cache`` is ``"bust"`` gets a fresh nonce in front of its prompt as it
is sent (warm-up included), before its clock starts: no two requests share a prefix the
server could serve from its prompt cache.

A request's token events are its chunks' token counts, rescaled to its output-token total when
the server reported a different one at the end (see :func:`token_events`).

A :class:`~pytest_llmperf.errors.TransientError` (429, 5xx, timeout, cut stream) is recorded by
kind and never retried: under load a retry changes the offered load. Any other error stops the
run and is raised. Every run is bounded: by ``requests``, by ``duration`` (no request starts
after it) or both, and each request by its backend's own timeouts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .backends import AsyncStreamer, Chunk, Request, Usage
from .errors import TransientError
from .harness import Generation, derive, spread_tokens
from .prefix_cache import Nonces, with_nonce

__all__ = [
    "LoadPoint",
    "LoadRun",
    "RequestRecord",
    "Spin",
    "generator_cpu_share",
    "poisson_offsets",
    "run_load",
    "token_events",
]

#: Sleep until this close to an arrival, then yield to the loop until it is due.
_SPIN_NS = 1_000_000
_T = TypeVar("_T")


@dataclass(frozen=True)
class LoadPoint:
    """One point of a sweep. Exactly one of ``concurrency`` (closed loop) or ``rate`` (open
    loop) drives it; ``concurrency`` with ``rate`` caps requests in flight."""

    concurrency: int | None
    rate: float | None
    requests: int | None
    duration: float | None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.requests is None and self.duration is None:
            raise ValueError("a load needs requests=N, duration=SECONDS or both")
        if self.rate is None and self.concurrency is None:
            raise ValueError("a load needs concurrency=N (closed loop) or rate=R (open loop)")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"rate must be > 0 requests/s, got {self.rate}")
        if self.requests is not None and self.requests < 1:
            raise ValueError(f"requests must be >= 1, got {self.requests}")
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"duration must be > 0 seconds, got {self.duration}")

    @property
    def mode(self) -> str:
        return "open" if self.rate is not None else "closed"

    @property
    def limit(self) -> int:
        """Requests that may be in flight at once (sizes the backend's connection pool)."""
        if self.concurrency is not None:
            return self.concurrency
        assert self.rate is not None
        if self.requests is not None:
            return self.requests
        assert self.duration is not None
        return max(1, min(4096, int(self.rate * self.duration * 2) + 16))


@dataclass
class RequestRecord:
    """One request: when it was due and sent, and its generation or its error kind."""

    index: int
    scheduled_ns: int
    t0: int
    t_end: int
    generation: Generation | None = None
    error: str | None = None
    message: str | None = None
    #: (arrival ns, tokens) per chunk that carried tokens; for per-window token throughput.
    token_events: list[tuple[int, int]] = field(default_factory=list, repr=False)
    #: When it got a concurrency slot, if it arrived with all taken (open loop with a cap);
    #: None: it did not wait for one.
    slot_ns: int | None = None

    @property
    def ready_ns(self) -> int:
        """When the generator could send it: due, and holding a slot."""
        return self.scheduled_ns if self.slot_ns is None else max(self.scheduled_ns, self.slot_ns)

    @property
    def lag_ns(self) -> int:
        """The generator's own delay: sent minus ready (a slot wait is not the generator's)."""
        return self.t0 - self.ready_ns

    @property
    def slot_wait_ns(self) -> int:
        return self.ready_ns - self.scheduled_ns


@dataclass
class LoadRun:
    point: LoadPoint
    records: list[RequestRecord]
    start_ns: int
    end_ns: int
    #: Process CPU over wall time, both outside the pre-arrival spins (:class:`Spin`): near
    #: 1.0, the client is CPU-bound.
    cpu_share: float
    #: Wall seconds spent spinning just before arrivals (busy by design, not in ``cpu_share``).
    spin_s: float = 0.0


@dataclass
class Spin:
    """Time spent yielding in the last millisecond before arrivals, summed over a run."""

    wall_ns: int = 0
    cpu_ns: int = 0


def generator_cpu_share(cpu_ns: int, wall_ns: int, spin: Spin) -> float:
    """CPU over wall time outside the spins. A spin keeps the core at 100% whatever the load,
    so counting it would make a high arrival rate alone look like a saturated generator; the
    work other tasks did during a spin is left out too, and the rest of the run stands for it."""
    wall = max(wall_ns - spin.wall_ns, 1)
    return max(cpu_ns - spin.cpu_ns, 0) / wall


def poisson_offsets(
    rate: float, seed: int, count: int | None, horizon_s: float | None
) -> list[int]:
    """Arrival times in ns from the start: exponential gaps of mean ``1/rate``, ``count`` of
    them or all before ``horizon_s`` (whichever ends first), the first after one gap."""
    rng = random.Random(seed)
    out: list[int] = []
    t = 0.0
    while count is None or len(out) < count:
        t += rng.expovariate(rate)
        if horizon_s is not None and t > horizon_s:
            break
        out.append(int(t * 1e9))
    return out


def token_events(
    stamps: Sequence[int], items: Sequence[Chunk | Usage], total: int
) -> list[tuple[int, int]]:
    """(arrival ns, tokens) per chunk that carried tokens, summing to ``total`` (the request's
    output tokens). A server that reports only a final usage count (Bedrock; OpenAI-compatible
    servers without a running count) leaves each chunk counted as one token; the reported total
    is then spread over the chunks in proportion to their counts, as ``derive`` spreads a
    chunk's gap over its tokens. Cumulative rounding keeps whole tokens and the exact sum.
    Without any token-carrying chunk there is nowhere to place tokens: none are returned."""
    events = [
        (stamp, item.tokens)
        for stamp, item in zip(stamps, items, strict=True)
        if isinstance(item, Chunk) and item.tokens > 0
    ]
    return spread_tokens(events, total)


async def _sleep_until(
    due_ns: int,
    spin: Spin,
    clock: Callable[[], int] = time.perf_counter_ns,
    cpu: Callable[[], int] = time.process_time_ns,
) -> None:
    while (left := due_ns - clock()) > _SPIN_NS:
        await asyncio.sleep((left - _SPIN_NS) / 1e9)
    start, cpu0 = clock(), cpu()
    if start >= due_ns:
        return
    while clock() < due_ns:
        await asyncio.sleep(0)
    spin.wall_ns += clock() - start
    spin.cpu_ns += cpu() - cpu0


class _Driver:
    def __init__(self, streamer: AsyncStreamer, requests: Sequence[Request]) -> None:
        self.streamer = streamer
        self.requests = requests
        self.records: list[RequestRecord] = []
        #: The first error that is not transient: it ends the run.
        self.fatal: Exception | None = None
        self.spin = Spin()
        self.nonces = Nonces()

    async def one(self, index: int, scheduled_ns: int, slot_ns: int | None = None) -> None:
        request = self.requests[index % len(self.requests)]
        if request.prefix_cache == "bust":
            # Here, per request sent, not once per prompt: requests cycle through the prompts,
            # and a repeated prompt would hit the cache its first send filled. Before t0.
            prompt = with_nonce(request.prompt, self.nonces.next())
            request = dataclasses.replace(request, prompt=prompt)
        clock = time.perf_counter_ns
        stamps: list[int] = []
        items: list[Chunk | Usage] = []
        t0 = clock()
        try:
            async for item in self.streamer.stream(request):
                stamps.append(clock())
                items.append(item)
        except TransientError as exc:
            record = RequestRecord(index, scheduled_ns, t0, clock(), error=exc.kind)
            record.message = str(exc)
            record.slot_ns = slot_ns
            self.records.append(record)
            return
        except Exception as exc:
            self.fatal = self.fatal or exc
            raise
        t_end = clock()
        generation = derive(t0, t_end, stamps, items, 0)
        events = token_events(stamps, items, generation.output_tokens)
        self.records.append(
            RequestRecord(
                index, scheduled_ns, t0, t_end, generation, token_events=events, slot_ns=slot_ns
            )
        )

    async def closed(self, point: LoadPoint, start_ns: int) -> None:
        counter = itertools.count()
        deadline = None if point.duration is None else start_ns + int(point.duration * 1e9)
        clock = time.perf_counter_ns

        async def worker() -> None:
            ready = start_ns
            while True:
                index = next(counter)
                if point.requests is not None and index >= point.requests:
                    return
                if deadline is not None and clock() >= deadline:
                    return
                await self.one(index, ready)
                ready = clock()

        assert point.concurrency is not None
        await _gather_or_cancel([worker() for _ in range(point.concurrency)])

    async def open(self, point: LoadPoint, start_ns: int) -> None:
        assert point.rate is not None
        offsets = poisson_offsets(point.rate, point.seed, point.requests, point.duration)
        slots = None if point.concurrency is None else asyncio.Semaphore(point.concurrency)

        async def limited(index: int, due: int) -> None:
            if slots is None:
                await self.one(index, due)
                return
            # Only a wait for a full set of slots is the server's doing; the delay before this
            # task first ran is the event loop's, and stays the generator's lag.
            full = slots.locked()
            async with slots:
                await self.one(index, due, time.perf_counter_ns() if full else None)

        tasks: list[asyncio.Task[None]] = []
        try:
            for index, offset in enumerate(offsets):
                due = start_ns + offset
                await _sleep_until(due, self.spin)
                tasks.append(asyncio.create_task(limited(index, due)))
                if self.fatal is not None:  # do not wait out the schedule to report it
                    raise self.fatal
            await _gather_or_cancel(tasks)
        finally:
            for task in tasks:
                task.cancel()


def _raise_failed(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def _gather_or_cancel(jobs: Sequence[Coroutine[Any, Any, None] | asyncio.Task[None]]) -> None:
    """Wait for all; on the first non-transient error cancel the rest and raise it."""
    tasks = [j if isinstance(j, asyncio.Task) else asyncio.ensure_future(j) for j in jobs]
    if not tasks:
        return
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        _raise_failed(list(done))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _run(
    open_streamer: Callable[[int], AsyncStreamer],
    requests: Sequence[Request],
    point: LoadPoint,
    warmup: int,
) -> LoadRun:
    streamer = open_streamer(max(point.limit, warmup))
    driver = _Driver(streamer, requests)
    try:
        if warmup > 0:
            # All at once: opens the connections the measured requests will reuse.
            wave = LoadPoint(warmup, None, warmup, None)
            await driver.closed(wave, time.perf_counter_ns())
            driver.records.clear()
        cpu0 = time.process_time_ns()
        start_ns = time.perf_counter_ns()
        if point.mode == "open":
            await driver.open(point, start_ns)
        else:
            await driver.closed(point, start_ns)
        end_ns = time.perf_counter_ns()
        cpu_ns = time.process_time_ns() - cpu0
    finally:
        await streamer.aclose()
    records = sorted(driver.records, key=lambda r: r.index)
    share = generator_cpu_share(cpu_ns, end_ns - start_ns, driver.spin)
    return LoadRun(point, records, start_ns, end_ns, share, driver.spin.wall_ns / 1e9)


def run_load(
    open_streamer: Callable[[int], AsyncStreamer],
    requests: Sequence[Request],
    point: LoadPoint,
    *,
    warmup: int = 0,
) -> LoadRun:
    """Run one load point to completion on a fresh event loop (in a thread when the caller is
    itself inside a running loop, e.g. an async test). ``warmup`` requests go first, together,
    and are not recorded."""
    if not requests:
        raise ValueError("a load needs at least one prompt")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    return _in_fresh_loop(lambda: _run(open_streamer, requests, point, warmup))


def _in_fresh_loop(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    box: list[_T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(asyncio.run(make()))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="llmperf-load")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]
