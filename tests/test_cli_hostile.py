"""Hostile input files for every ``llmperf`` subcommand, run in-process through ``cli.main``.

Each variant below is one file: truncated, of the wrong type at some level of the schema, with
numbers JSON cannot hold (``NaN``, ``1e400``, a 400-digit integer), nested 100k deep, huge, not
UTF-8, a directory, or degenerate but valid (all-zero samples, one value, constants). Every
subcommand must end with exit 0 or 1 and no stderr, or exit 2 with exactly one
``llmperf: error:`` line naming the file; ``report`` over a history holding the file and a good
night must skip and list the file, or include it. Never an exception.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nightly_docs import nights, regression_gate

from pytest_llmperf.cli import main

#: Makes the file's bytes from a fresh copy of the base document; ``None`` makes a directory.
Maker = Callable[[dict[str, Any]], "bytes | None"]
_DELETE = object()
_PLACE = "__hostile__"
DEEP = 100_000
BIG_INT = "1" + "0" * 400


def base_document(node: str) -> dict[str, Any]:
    """A valid document with every part the checks look at: a gate with stored baseline
    samples, error counts, a judge verdict and a quality-gate verdict with pairs."""
    gate = regression_gate(1.3)
    doc = nights(1, lambda n, t: 1.0, gate=lambda n, t: copy.deepcopy(gate))[0]
    doc["environment"]["machine_info"]["node"] = node
    result = doc["results"][0]
    # Rising samples, as a warming-up machine gives: the gate's trend check then runs too.
    result["samples"] = {m: sorted(v) for m, v in result["samples"].items()}
    result["gate"]["baseline_samples"] = {"tpot_s": [v / 1.3 for v in result["samples"]["tpot_s"]]}
    result["errors"] = {"attempts": 10, "failed": 0, "by_kind": {}, "retried": 0}
    nodeid = result["nodeid"]
    doc["quality"] = [
        {
            "nodeid": nodeid,
            "call": 0,
            "backend": "fake:m",
            "backend_id": "fake:m",
            "score": 80.0,
            "spread": {"sd": 1.0, "min": 79.0, "max": 81.0},
            "judge": "openai:judge",
        }
    ]
    doc["quality_gate"] = [
        {
            "backend": "fake:m",
            "backend_id": "fake:m",
            "verdict": "PASS",
            "n_pairs": 1,
            "margin": 5.0,
            "alpha": 0.05,
            "mean_diff": 1.0,
            "ci_low": 0.0,
            "ci_high": 2.0,
            "p_noninferior": 0.01,
            "p_regression": 0.9,
            "method": "sign-flip permutation",
            "pairs": [{"id": f"{nodeid}#0", "current": 80.0, "baseline": 79.0}],
        }
    ]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    *head, last = path
    for key in head:
        doc = doc[key]
    if value is _DELETE:
        del doc[last]
    else:
        doc[last] = value


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def value_at(path: tuple[Any, ...], value: Any) -> Maker:
    def make(doc: dict[str, Any]) -> bytes:
        _set(doc, path, value)
        return _dumps(doc)

    return make


def literal_at(path: tuple[Any, ...], literal: str) -> Maker:
    """``literal`` written as is at ``path``: what json.dumps would never write."""

    def make(doc: dict[str, Any]) -> bytes:
        _set(doc, path, _PLACE)
        return _dumps(doc).replace(json.dumps(_PLACE).encode(), literal.encode())

    return make


def edit(change: Callable[[dict[str, Any]], None]) -> Maker:
    def make(doc: dict[str, Any]) -> bytes:
        change(doc)
        return _dumps(doc)

    return make


def raw(data: bytes | Callable[[bytes], bytes] | None) -> Maker:
    def make(doc: dict[str, Any]) -> bytes | None:
        return data(_dumps(doc)) if callable(data) else data

    return make


def _every_sample(doc: dict[str, Any], values: Callable[[list[Any]], list[Any]]) -> None:
    """Replace every sample list (the result's and the gate's stored baseline's)."""
    result = doc["results"][0]
    for table in (result["samples"], result["gate"]["baseline_samples"]):
        for metric in table:
            table[metric] = values(table[metric])


def _zeros(doc: dict[str, Any]) -> None:
    _every_sample(doc, lambda v: [0.0] * len(v))
    for stats in doc["results"][0]["stats"].values():
        for key in stats:
            if key != "n":
                stats[key] = 0.0


# --- the variants ---------------------------------------------------------------------------

S0 = ("results", 0, "samples", "tpot_s", 0)
NUMBER_PATHS = {
    "sample": S0,
    "median": ("results", 0, "stats", "tpot_s", "median"),
    "ratio": ("results", 0, "gate", "metrics", 0, "ratio"),
    "stored sample": ("results", 0, "gate", "baseline_samples", "tpot_s", 0),
    "score": ("quality", 0, "score"),
    "pair": ("quality_gate", 0, "pairs", 0, "current"),
}
BAD_NUMBERS = {
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "1e400": "1e400",
    "10**400": BIG_INT,
}
COUNT_PATHS = {
    "runs": ("results", 0, "runs"),
    "n_pairs": ("quality_gate", 0, "n_pairs"),
    "schema_version": ("schema_version",),
    "call": ("quality", 0, "call"),
    "failed": ("results", 0, "errors", "failed"),
    "stats n": ("results", 0, "stats", "tpot_s", "n"),
}
BAD_COUNTS = {"10**400": BIG_INT, "2**64": str(2**64), "-1": "-1", "1.5": "1.5"}
#: Where a wrong type is put: every top-level key, every key of a result, and nested objects.
TYPE_PATHS = [
    *[
        (key,)
        for key in (
            "schema_version",
            "created",
            "command",
            "settings",
            "environment",
            "backends",
            "backend_errors",
            "results",
            "quality",
            "quality_gate",
            "plugin",
        )
    ],
    *[
        ("results", 0, key)
        for key in (
            "name",
            "nodeid",
            "backend",
            "backend_id",
            "params",
            "runs",
            "stats",
            "samples",
            "gate",
            "generations",
            "missing",
            "errors",
        )
    ],
    ("results", 0),
    ("results", 0, "stats", "tpot_s"),
    ("results", 0, "samples", "tpot_s"),
    ("results", 0, "gate", "metrics"),
    ("results", 0, "gate", "metrics", 0),
    ("results", 0, "gate", "verdict"),
    ("results", 0, "gate", "baseline_samples"),
    ("environment", "machine_info"),
    ("environment", "commit_info"),
    ("backends", 0),
    ("backends", 0, "key"),
    ("backends", 0, "key", "strict"),
    ("quality", 0),
    ("quality", 0, "spread"),
    ("quality_gate", 0, "pairs"),
    ("quality_gate", 0, "pairs", 0),
]
WRONG_TYPES: dict[str, Any] = {"null": None, "string": "x", "number": 7, "list": [], "object": {}}
MISSING_PATHS = [
    *[
        (key,)
        for key in (
            "schema_version",
            "created",
            "environment",
            "backends",
            "results",
            "quality",
            "quality_gate",
        )
    ],
    *[
        ("results", 0, key)
        for key in ("name", "nodeid", "backend_id", "runs", "stats", "samples", "gate")
    ],
    ("results", 0, "gate", "metrics", 0, "metric"),
    ("results", 0, "gate", "metrics", 0, "ratio"),
    ("quality", 0, "score"),
    ("quality_gate", 0, "margin"),
]


def _label(path: tuple[Any, ...]) -> str:
    return ".".join(map(str, path))


def _type_of(doc: Any, path: tuple[Any, ...]) -> type:
    for key in path:
        doc = doc[key]
    return type(doc)


def _variants() -> dict[str, Maker]:
    out: dict[str, Maker] = {
        "empty file": raw(b""),
        "whitespace only": raw(b" \n\t\n"),
        "a directory": raw(None),
        "not UTF-8": raw(lambda good: b"\xff\xfe" + good),
        "latin-1 text": raw(lambda good: good.replace(b'"fake:m"', '"caf\xe9"'.encode("latin-1"))),
        "UTF-16": raw(lambda good: good.decode().encode("utf-16")),
        "UTF-8 BOM": raw(lambda good: b"\xef\xbb\xbf" + good),
        "NUL bytes": raw(b"\0" * 64),
        "binary": raw(bytes(range(256)) * 4),
        "trailing garbage": raw(lambda good: good + b" x"),
        "two documents": raw(lambda good: good + good),
        "top-level null": raw(b"null"),
        "top-level number": raw(b"1"),
        "top-level string": raw(b'"results"'),
        "top-level list": raw(b"[]"),
        "top-level true": raw(b"true"),
        "top-level empty object": raw(b"{}"),
        "top-level NaN": raw(b"NaN"),
        "top-level 10**400": raw(BIG_INT.encode()),
        "deep list 100k": raw(b"[" * DEEP + b"]" * DEEP),
        "deep object 100k": raw(b'{"a":' * DEEP + b"1" + b"}" * DEEP),
        "deep params 100k": literal_at(("results", 0, "params"), "[" * DEEP + "]" * DEEP),
        "deep params 1000": literal_at(("results", 0, "params"), "[" * 1000 + "]" * 1000),
        "deep command 100": literal_at(("command",), "[" * 100 + "]" * 100),
        "duplicate results key": raw(lambda good: good[:-1] + b', "results": 5}'),
        "surrogate in nodeid": literal_at(("results", 0, "nodeid"), '"t.py::test_\\ud800"'),
        "escape codes in backend": value_at(("results", 0, "backend_id"), "\x1b[2J\x1b[31mfake"),
        "1MB nodeid": value_at(("results", 0, "nodeid"), "t" * 1_000_000),
        "100k strings as samples": value_at(S0[:-1], ["x"] * DEEP),
        "100k strings as results": value_at(("results",), ["x"] * DEEP),
        "100k strings as command": value_at(("command",), ["x"] * DEEP),
        "20k samples": edit(
            lambda d: _every_sample(d, lambda v: [v[i % len(v)] for i in range(20_000)])
        ),
        # Degenerate but valid: a defined verdict, or a note, never a crash.
        "all-zero samples": edit(_zeros),
        "one sample": edit(lambda d: _every_sample(d, lambda v: v[:1])),
        "two samples": edit(lambda d: _every_sample(d, lambda v: v[:2])),
        "constant samples": edit(lambda d: _every_sample(d, lambda v: [0.02] * len(v))),
        "no samples": edit(lambda d: _every_sample(d, lambda v: [])),
        "null samples": edit(lambda d: _every_sample(d, lambda v: [None] * len(v))),
        "half null samples": edit(
            lambda d: _every_sample(d, lambda v: [x if i % 2 else None for i, x in enumerate(v)])
        ),
        "huge samples 1e300": edit(lambda d: _every_sample(d, lambda v: [x * 1e300 for x in v])),
        "largest floats": edit(lambda d: _every_sample(d, lambda v: [1.7e308] * len(v))),
        "subnormal samples": edit(lambda d: _every_sample(d, lambda v: [5e-324] * len(v))),
        "negative samples": edit(lambda d: _every_sample(d, lambda v: [-x for x in v])),
        "one negative sample": value_at(S0, -0.02),
        "boolean sample": value_at(S0, True),
        "no results": value_at(("results",), []),
        "runs 0": value_at(("results", 0, "runs"), 0),
        "ratio 0": value_at(NUMBER_PATHS["ratio"], 0.0),
        "ratio null": value_at(NUMBER_PATHS["ratio"], None),
        "negative score": value_at(NUMBER_PATHS["score"], -5.0),
        "score 1e308": value_at(NUMBER_PATHS["score"], 1e308),
        "created year 1": value_at(("created",), "0001-01-01T00:00:00"),
        "created year 9999": value_at(("created",), "9999-12-31T23:59:59+00:00"),
        "created date only": value_at(("created",), "2026-10-01"),
        "created month 13": value_at(("created",), "2026-13-01T00:00:00"),
        "merged, no sources": value_at(("sources",), []),
        "merged, bad source": value_at(("sources",), [{"created": "yesterday"}]),
        "merged, source index 5": edit(
            lambda d: d.update(
                sources=[{"created": d["created"], "environment": d["environment"]}],
                results=[{**d["results"][0], "source": 5}],
            )
        ),
    }
    for fraction in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99):
        out[f"truncated at {fraction:.0%}"] = raw(
            lambda good, f=fraction: good[: int(len(good) * f)]
        )
    out["truncated by one byte"] = raw(lambda good: good[:-1])
    for where, path in NUMBER_PATHS.items():
        for name, literal in BAD_NUMBERS.items():
            out[f"{name} as {where}"] = literal_at(path, literal)
    for where, path in COUNT_PATHS.items():
        for name, literal in BAD_COUNTS.items():
            out[f"{name} as {where}"] = literal_at(path, literal)
    doc = base_document("ci-b")
    for path in TYPE_PATHS:
        kind = _type_of(doc, path)
        for name, value in WRONG_TYPES.items():
            if type(value) is not kind:
                out[f"{name} as {_label(path)}"] = value_at(path, copy.deepcopy(value))
    for path in MISSING_PATHS:
        out[f"no {_label(path)}"] = value_at(path, _DELETE)
    return out


VARIANTS = _variants()


# --- running them ---------------------------------------------------------------------------


def write_variant(name: str, path: Path) -> Path:
    data = VARIANTS[name](base_document("ci-b"))
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)
    return path


def run_llmperf(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Exit status, stdout and stderr; a warning (numpy's overflow, say) counts as stderr, as
    it would reach the user's terminal."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main([str(a) for a in args])
        except Exception as exc:  # the finding itself: say which, not a traceback of the test
            capsys.readouterr()
            pytest.fail(f"llmperf {args[0]} raised {type(exc).__name__}: {str(exc)[:200]}")
    out, err = capsys.readouterr()
    err += "".join(
        f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})\n" for w in caught
    )
    return code, out, err


def problems_with(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str) -> list[str]:
    """What each subcommand did wrong with variant ``name``; empty when all were clean."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps(base_document("ci-a")))
    bad = write_variant(name, tmp_path / "hostile.json")
    merged = tmp_path / "merged.json"
    problems = []
    for args in (
        ["show", bad, "--width", "120"],
        ["compare", good, bad],
        ["compare", bad, good],
        ["merge", good, bad, "-o", merged],
    ):
        code, out, err = run_llmperf(capsys, *args)
        what = f"{args[0]} {' '.join(p.name for p in args if isinstance(p, Path))}"
        if code == 2:
            lines = err.splitlines()
            if len(lines) != 1 or not lines[0].startswith("llmperf: error: "):
                problems.append(f"{what}: exit 2 without one error line: {err[:300]!r}")
            elif str(bad) not in lines[0]:
                problems.append(f"{what}: the error does not name the file: {err[:300]!r}")
            if out:
                problems.append(f"{what}: exit 2 with output {out[:200]!r}")
        elif code in (0, 1):
            if err:
                problems.append(f"{what}: exit {code} with stderr {err[:300]!r}")
            if not out:
                problems.append(f"{what}: exit {code} and no output")
        else:
            problems.append(f"{what}: exit {code}")
        if args[0] == "merge" and code == 0:
            # What merge wrote must read back.
            code, _, err = run_llmperf(capsys, "show", merged)
            if code != 0:
                problems.append(f"show of the merged file: exit {code}: {err[:300]!r}")
    history = tmp_path / "history"
    history.mkdir()
    (history / "good.json").write_text(good.read_text())
    write_variant(name, history / "hostile.json")
    html = tmp_path / "nightly.html"
    code, out, err = run_llmperf(capsys, "report", history, "-o", html)
    lines = err.splitlines()
    if code != 0:
        problems.append(f"report: exit {code} with a good night beside it: {err[:300]!r}")
    elif lines:
        if len(lines) != 1 or not lines[0].startswith("llmperf: warning: skipped "):
            problems.append(f"report: stderr is not one skipped-file line: {err[:300]!r}")
        elif "hostile.json" not in lines[0] or "(1 night(s)" not in out:
            problems.append(f"report: the skipped file is not named, or was counted: {err!r}")
        elif "1 file(s) skipped" not in html.read_text():
            problems.append("report: the skipped file is not listed on the page")
    elif "(2 night(s)" not in out:
        problems.append(f"report: the file was neither skipped nor included: {out!r}")
    return problems


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_subcommand_handles_a_hostile_file_cleanly(capsys, tmp_path, name):
    problems = problems_with(capsys, tmp_path, name)
    assert not problems, "\n".join(problems)
