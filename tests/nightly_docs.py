"""Synthetic results documents built to the schema (pytest_llmperf/results.py), for history,
step-detection and ``llmperf`` tests: nights of lognormal noise with chosen level changes."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from pytest_llmperf.results import SCHEMA_VERSION
from pytest_llmperf.stats import summarize

START = datetime(2026, 10, 1, 3, 0, tzinfo=timezone.utc)
TOKENS = 32


def commit_of(night: int) -> str:
    return f"{night:02d}" + "c0ffee" * 6 + "ab"


def result(
    rng: random.Random,
    test: str,
    backend: str,
    *,
    level: float,
    n: int = 10,
    cv: float = 0.05,
    night_cv: float = 0.05,
    base_tpot: float = 0.02,
    gate: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One benchmark's result: ``n`` generations at ``level`` x the base latency, with a
    night-wide factor (between-run drift) and per-sample noise, both lognormal."""
    night = rng.lognormvariate(0.0, night_cv)
    tpot = [base_tpot * level * night * rng.lognormvariate(0.0, cv) for _ in range(n)]
    ttft = [0.1 * level * night * rng.lognormvariate(0.0, cv) for _ in range(n)]
    e2e = [a + b * (TOKENS - 1) for a, b in zip(ttft, tpot, strict=True)]
    samples = {
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2e_s": e2e,
        "decode_tps": [1 / t for t in tpot],
        "sec_per_token": [e / TOKENS for e in e2e],
        "output_tokens": [float(TOKENS)] * n,
    }
    return {
        "name": "",
        "nodeid": f"tests/test_bench.py::{test}[{backend}]",
        "backend": backend,
        "backend_id": backend,
        "params": {"prompt": "hello", "max_tokens": TOKENS},
        "runs": n,
        "warmup": 1,
        "stats": {m: summarize(v).to_json() for m, v in samples.items()},
        "missing": {},
        "samples": samples,
        "generations": [],
        "gate": gate,
    }


def document(
    results: Sequence[dict[str, Any]],
    *,
    created: datetime,
    commit: str | None,
    node: str = "ci-a",
    quality: Sequence[dict[str, Any]] = (),
    quality_gate: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    backends = sorted({r["backend_id"] for r in results})
    return {
        "schema_version": SCHEMA_VERSION,
        "plugin": {"name": "pytest-llmperf", "version": "0.1.0"},
        "created": created.isoformat(timespec="seconds"),
        "command": ["pytest", "--llm-history=hist"],
        "settings": {"runs": 10, "alpha": 0.05, "fail_on": "both"},
        "environment": {
            "cpu_model": "Test CPU",
            "cpu_count": 2,
            "gpus": [],
            "machine_info": {"node": node},
            "commit_info": {"id": commit or "unversioned", "dirty": False, "branch": "main"},
        },
        "backends": [
            {
                "spec": b,
                "id": b,
                "kind": b.split(":")[0],
                "role": "candidate",
                "key": {"strict": {"cpu_model": "Test CPU", "backend": b.split(":")[0]}},
            }
            for b in backends
        ],
        "backend_errors": {},
        "results": list(results),
        "quality": list(quality),
        "quality_gate": list(quality_gate),
    }


def regression_gate(ratio: float) -> dict[str, Any]:
    """A gate outcome as the plugin writes it for a TPOT regression."""
    metric = {
        "metric": "tpot_s",
        "verdict": "REGRESSION",
        "ratio": ratio,
        "ci_low": ratio - 0.05,
        "ci_high": ratio + 0.05,
        "p_slowdown": 1e-5,
        "p_improvement": 1.0,
        "p_no_slowdown": 1.0,
        "tolerance": 0.05,
        "effective_tolerance": 0.05,
        "n_current": 10,
        "n_baseline": 10,
        "runs_to_settle": None,
        "note": "interleaved pairs, same job",
    }
    return {
        "verdict": "REGRESSION",
        "mode": "relative",
        "against": "fake:old (same job)",
        "samples": 10,
        "looks": [10],
        "comparisons": 2,
        "p_sequential": {"tpot_s": 2e-5},
        "metrics": [metric],
        "warnings": [],
        "confirmation": None,
    }


def nights(
    count: int,
    level: Callable[[int, str], float],
    *,
    seed: int = 0,
    tests: Sequence[str] = ("test_chat",),
    backends: Sequence[str] = ("fake:m",),
    gate: Callable[[int, str], dict[str, Any] | None] = lambda night, test: None,
) -> list[dict[str, Any]]:
    """``count`` nightly documents; ``level(night, test)`` scales that night's latency."""
    rng = random.Random(seed)
    out = []
    for night in range(count):
        results = [
            result(rng, test, backend, level=level(night, test), gate=gate(night, test))
            for test in tests
            for backend in backends
        ]
        out.append(
            document(results, created=START + timedelta(days=night), commit=commit_of(night))
        )
    return out
