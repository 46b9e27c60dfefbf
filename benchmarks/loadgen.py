"""How much load can ``llm_load``'s generator offer before it, not the server, sets the pace?

    python benchmarks/loadgen.py [--quick] [--concurrency 1 16 64 256]

Starts ``tests/load_server.py`` in a separate process (its own GIL) answering every request
instantly with a 4-token stream, then, per concurrency cap, raises an open-loop Poisson rate
(x1.5 steps) until the median scheduling lag (actual minus scheduled send) reaches 1 ms or the
requests stop keeping up, and prints the highest rate that stayed under. The same is done with a
bare ``httpx`` (the module openai is built on) async streaming loop on the same schedule and
sleep routine, so the ratio isolates the client stack: openai's async client plus the plugin's
parsing and timing against raw HTTP.

Nothing here asserts: the figures are for people to read, and they move with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from load_server import directive  # noqa: E402

from pytest_llmperf._loadgen import LoadPoint, Spin, _sleep_until, poisson_offsets, run_load  # noqa: E402
from pytest_llmperf.backends import Request  # noqa: E402
from pytest_llmperf.backends.openai import OpenAIBackend  # noqa: E402
from pytest_llmperf.options import resolve_options  # noqa: E402
from pytest_llmperf.spec import parse_spec  # noqa: E402

LAG_LIMIT_S = 0.001
PROMPT = directive(tokens=4)


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "load_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError(f"load server did not start: {url!r}")
    return proc, url


def plugin_trial(backend: OpenAIBackend) -> Callable[[int, float, int], tuple[float, float]]:
    def trial(c: int, rate: float, n: int) -> tuple[float, float]:
        point = LoadPoint(c, rate, n, None, seed=1)
        run = run_load(backend.open_async, [Request(PROMPT, 8)], point, warmup=min(c, 16))
        lags = [r.lag_ns / 1e9 for r in run.records]
        return statistics.median(lags), (run.end_ns - run.start_ns) / 1e9

    return trial


def httpx_trial(url: str) -> Callable[[int, float, int], tuple[float, float]]:
    import openai

    http = sys.modules[openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0]]
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 8,
        "stream": True,
    }

    async def run(c: int, rate: float, n: int) -> tuple[float, float]:
        limits = http.Limits(max_connections=c, max_keepalive_connections=c)
        async with http.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            slots = asyncio.Semaphore(c)
            lags: list[float] = []

            async def one(due: int) -> None:
                # As llm_load counts it: from when the request was due, or got a slot if all
                # were taken (that wait is the server's).
                full = slots.locked()
                async with slots:
                    now = time.perf_counter_ns()
                    lags.append((now - (max(due, now) if full else due)) / 1e9)
                    async with client.stream("POST", "/chat/completions", json=body) as resp:
                        async for _ in resp.aiter_lines():
                            pass

            await asyncio.gather(*(one(time.perf_counter_ns()) for _ in range(min(c, 16))))
            lags.clear()
            start = time.perf_counter_ns()
            spin = Spin()  # the same pre-arrival wait as the generator's
            tasks = []
            for offset in poisson_offsets(rate, 1, n, None):
                await _sleep_until(start + offset, spin)
                tasks.append(asyncio.create_task(one(start + offset)))
            await asyncio.gather(*tasks)
            return statistics.median(lags), (time.perf_counter_ns() - start) / 1e9

    return lambda c, rate, n: asyncio.run(run(c, rate, n))


def max_rate(
    trial: Callable[[int, float, int], tuple[float, float]], c: int, seconds: float
) -> tuple[float, float]:
    """Highest rate whose median lag stayed under 1 ms (and whose run kept pace), and its lag."""
    best, best_lag, rate = 0.0, float("nan"), 25.0
    while rate <= 20000:
        n = max(40, int(rate * seconds))
        # A shared machine stalls now and then: a rate fails only when two tries both fail.
        for _ in range(2):
            lag, wall = trial(c, rate, n)
            # Arrivals span about n / rate s; finishing far later means the client fell behind.
            if lag < LAG_LIMIT_S and wall <= 1.5 * n / rate + 0.2:
                break
        else:
            break
        best, best_lag = rate, lag
        rate *= 1.5
    return best, best_lag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter trials (~0.4 s each)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    args = parser.parse_args()
    seconds = 0.4 if args.quick else 1.0
    proc, url = start_server()
    try:
        spec = parse_spec(f"openai:m@{url}?timeout=30&deadline=60")
        backend = OpenAIBackend(spec, resolve_options(spec, OpenAIBackend.options))
        backend.check()
        backend.load()
        rows = []
        for c in args.concurrency:
            ours, our_lag = max_rate(plugin_trial(backend), c, seconds)
            bare, bare_lag = max_rate(httpx_trial(url), c, seconds)
            rows.append((c, ours, our_lag, bare, bare_lag))
            print(f"  concurrency {c}: llm_load {ours:.0f}/s, httpx {bare:.0f}/s", flush=True)
        backend.close()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
    print()
    print("highest Poisson rate (req/s) with median scheduling lag < 1 ms, instant 4-token server")
    print(f"{'conc':>5}  {'llm_load':>9}  {'lag ms':>7}  {'httpx':>9}  {'lag ms':>7}  {'ratio':>6}")
    for c, ours, our_lag, bare, bare_lag in rows:
        ratio = f"{ours / bare:.2f}" if bare else "-"
        print(
            f"{c:>5}  {ours:>9.0f}  {our_lag * 1e3:>7.3f}  {bare:>9.0f}  {bare_lag * 1e3:>7.3f}  "
            f"{ratio:>6}"
        )


if __name__ == "__main__":
    main()
