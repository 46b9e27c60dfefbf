"""Does the gate cry wolf, and does it catch real slowdowns? Measured on the embedded model.

    python benchmarks/gate_validation.py [--replicates 20] [--max-tokens 8] [--out DIR]

1. A/A, no change at all: (a) stored baseline, separate processes (3 saves pooled, then
   ``--replicates`` compares); (b) relative mode, the same spec on both sides. False alarms are
   counted with an exact binomial 95% interval; the detectable slowdown the gate printed is shown.
2. A/B power, semi-synthetic: real A/A samples (relative mode, 40 pairs) with the candidate's
   times scaled by 1.05 ... 1.50, decided by the gate's own sequential procedure; also the mean
   number of samples it used against a fixed 40. For the stored mode, single-instance runs of 40
   samples, scaled the same way, against the stored baseline.
3. A/B end to end: real slowdowns (one thread instead of two in relative mode; a process burning
   a core during a stored-baseline compare) must be flagged.

Raw data (pytest JSON results) stays in ``--out`` (default: a temporary directory), never in the
repository. Nothing asserts: it prints figures. Takes about 20-30 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_llmperf.baseline import StoredBenchmark, load_baseline
from pytest_llmperf.compare import GatePolicy, Reference, outcome, sequential
from pytest_llmperf.gate import DEFAULT_TOLERANCES, Verdict
from pytest_llmperf.harness import Generation
from pytest_llmperf.stats import binomial_ci

SPEC = "llamacpp:gemma3-270m"
SUITE = """
import pytest

@pytest.mark.llm_perf(max_tokens={max_tokens}, warmup=1)
def test_val(llm_bench):
    llm_bench("The capital of France is")
"""
FACTORS = (1.0, 1.05, 1.10, 1.20, 1.50)
TIMES = ("ttft_s", "e2e_s", "tpot_s", "sec_per_token")


def pytest_run(root: Path, out: Path, *args: str, reuse: bool = False) -> dict[str, Any]:
    """One separate pytest process; returns its single result (with its gate).

    With ``reuse``, a result file already in the output directory is read instead.
    """
    if reuse and out.exists():
        return dict(json.loads(out.read_text())["results"][0])
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--llm-json={out}"]
    done = subprocess.run([*cmd, *args], cwd=root, capture_output=True, text=True, check=False)
    if not out.exists():
        raise SystemExit(f"pytest wrote no results:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text())["results"][0]
    return result


def generations(raw: list[dict[str, Any]]) -> list[Generation]:
    return [Generation(**{**g, "itl_s": []}) for g in raw]


def scaled(gens: list[Generation], factor: float) -> list[Generation]:
    """The candidate made ``factor`` times slower: every time scales, token counts do not."""
    return [
        dataclasses.replace(
            g,
            **{m: getattr(g, m) * factor for m in TIMES if getattr(g, m) is not None},
            decode_tps=g.decode_tps / factor if g.decode_tps else None,
        )
        for g in gens
    ]


def decide(
    reference: Reference, mine: list[Generation], theirs: list[Generation], looks: tuple[int, ...]
) -> tuple[str, int]:
    policy = GatePolicy(dict(DEFAULT_TOLERANCES), 0.05 / 2, 2, confirm=False)

    def extend(count: int, start: int) -> tuple[list[Generation], list[Generation]]:
        return mine[start : start + count], theirs[start : start + count]

    got, _, verdicts = sequential(reference, looks, policy, extend)
    return outcome(reference, verdicts, looks, policy, len(got))["verdict"], len(got)


def rate(verdicts: list[str], what: str = Verdict.REGRESSION) -> str:
    k, n = sum(v == what for v in verdicts), len(verdicts)
    low, high = binomial_ci(k, n)
    return f"{k}/{n} = {k / n:.0%} (95% CI {low:.0%}..{high:.0%})"


def detectable(results: list[dict[str, Any]]) -> str:
    tols = [
        m["effective_tolerance"]
        for r in results
        for m in (r["gate"] or {}).get("metrics", [])
        if m["metric"] == "tpot_s"
    ]
    return f"+{statistics.median(tols):.0%} (TPOT, median over runs)" if tols else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="read result files already in --out instead of rerunning",
    )
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="llmperf-gate-validation-"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_val.py").write_text(SUITE.format(max_tokens=args.max_tokens))
    n = args.replicates

    def run(out: Path, *pytest_args: str) -> dict[str, Any]:
        return pytest_run(root, out, *pytest_args, reuse=args.reuse)

    started = time.time()
    print(f"raw data in {root}; {n} replicates, {args.max_tokens} tokens per generation\n")

    # 1a. stored baseline, separate processes
    for i in range(3):
        run(root / f"save{i}.json", f"--llm={SPEC}", "--llm-save-baseline")
    stored_aa = [run(root / f"aa_stored{i}.json", f"--llm={SPEC}") for i in range(n)]
    # 1b. relative mode, same spec on both sides, default sequential plan
    rel = (f"--llm={SPEC}", f"--llm-compare-to={SPEC}", "--llm-no-compare")
    rel_aa = [run(root / f"aa_rel{i}.json", *rel) for i in range(n)]
    # 2. data for the power study: relative A/A, 40 samples per side
    data = [run(root / f"data{i}.json", *rel, "--llm-runs=40") for i in range(n)]
    # ... and single-instance runs (as a stored baseline is compared) for the stored mode's power
    solo = [
        run(root / f"solo{i}.json", f"--llm={SPEC}", "--llm-runs=40", "--llm-no-compare")
        for i in range(n)
    ]
    # 3. real slowdowns
    threads = [
        run(
            root / f"threads{i}.json",
            f"--llm={SPEC}?n_threads=1",
            f"--llm-compare-to={SPEC}?n_threads=2",
            "--llm-no-compare",
        )
        for i in range(3)
    ]
    burned = []
    for i in range(3):
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            burned.append(run(root / f"burn{i}.json", f"--llm={SPEC}"))
        finally:
            burner.kill()

    print("1. A/A false alarms (REGRESSION verdicts with no change)")
    verdicts = [r["gate"]["verdict"] for r in stored_aa]
    print(f"   stored baseline, separate processes: {rate(verdicts)}")
    print(f"     verdicts {_count(verdicts)}; mean samples {_mean_samples(stored_aa):.1f}")
    print(f"     detectable slowdown printed: {detectable(stored_aa)}")
    verdicts = [r["gate"]["verdict"] for r in rel_aa]
    print(f"   relative mode, interleaved:          {rate(verdicts)}")
    print(f"     verdicts {_count(verdicts)}; mean samples {_mean_samples(rel_aa):.1f}")

    stored = load_baseline(next(iter((root / "baselines").glob("*.json"))))
    assert stored is not None
    stored_entry: StoredBenchmark = next(iter(stored.benchmarks.values()))
    stored_ref = Reference("stored", "stored", stored=stored_entry)
    print("\n2. A/B power, semi-synthetic (candidate times x factor; no confirmation re-run)")
    print("   factor  relative: detected      mean samples   stored: detected      mean samples")
    for factor in FACTORS:
        rel_v, rel_n, sto_v, sto_n = [], [], [], []
        for r in data:
            mine = scaled(generations(r["generations"]), factor)
            theirs = generations(r["reference_generations"])
            v, used = decide(Reference("relative", "ref"), mine, theirs, (10, 20, 40))
            rel_v.append(v)
            rel_n.append(used)
        for r in solo:
            v, used = decide(
                stored_ref, scaled(generations(r["generations"]), factor), [], (10, 20, 40)
            )
            sto_v.append(v)
            sto_n.append(used)
        print(
            f"   x{factor:<5.2f} {rate(rel_v):>30} {statistics.mean(rel_n):5.1f} of 40"
            f" {rate(sto_v):>30} {statistics.mean(sto_n):5.1f} of 40"
        )

    print("\n3. A/B end to end (real slowdowns)")
    for label, runs in (("relative, 1 thread vs 2", threads), ("stored, a core burned", burned)):
        parts = [f"{r['gate']['verdict']} {(_ratio(r) - 1) * 100:+.0f}%" for r in runs]
        print(f"   {label}: {', '.join(parts)}")
    print(f"\n({time.time() - started:.0f} s)")


def _count(verdicts: list[str]) -> dict[str, int]:
    return {v: verdicts.count(v) for v in sorted(set(verdicts))}


def _mean_samples(results: list[dict[str, Any]]) -> float:
    return statistics.mean(r["gate"]["samples"] for r in results)


def _ratio(result: dict[str, Any]) -> float:
    metrics = result["gate"].get("metrics") or [{"ratio": float("nan")}]
    return float(metrics[0]["ratio"])


if __name__ == "__main__":
    main()
