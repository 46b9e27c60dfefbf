"""``--llm-html``: one self-contained HTML page per run.

Rendered by jinja2 with autoescaping on (prompts, responses, test names and judge reasons are
data, never markup); charts are matplotlib SVG inlined in the page; a Content-Security-Policy
forbids scripts and every fetch, so the page works offline and a string that slipped through
could still not run. Regressions come first, then the summary table, the quality gate, the
charts, the samples behind them and the environment with the exact command line.
"""

from __future__ import annotations

import shlex
from typing import Any

from ._report_charts import Panel, distribution_chart, tradeoff_chart
from ._report_data import (
    COLUMNS,
    ORDER,
    backend_points,
    baseline_samples,
    bench_label,
    findings,
    output_problems,
    prompt_text,
    quality_comparison,
    rows,
    verdict_counts,
)
from .gate import Verdict

__all__ = ["MAX_DISTRIBUTIONS", "render_html"]

#: Benchmarks whose sample distributions are drawn (regressions first); a page with hundreds of
#: charts helps nobody and takes long to draw.
MAX_DISTRIBUTIONS = 60
#: Characters of a prompt or response shown before it is cut.
MAX_TEXT = 4000
#: A load test's prompts shown (the rest are counted).
MAX_PROMPTS = 3

_TITLES = {
    "tpot_s": "TPOT",
    "ttft_s": "TTFT",
    "e2e_s": "end-to-end",
    "sec_per_token": "seconds per token",
    "decode_tps": "decode tok/s",
    "prefill_tps": "prefill tok/s",
    "ttft_p95_s": "TTFT p95",
    "throughput_rps": "throughput",
    "output_tps": "output throughput",
}


def _clip(value: Any) -> str:
    text = "" if value is None else str(value)
    if len(text) <= MAX_TEXT:
        return text
    return f"{text[:MAX_TEXT]}\n… ({len(text) - MAX_TEXT} more characters)"


def _panel_metrics(result: dict[str, Any]) -> list[str]:
    gated = [m["metric"] for m in (result.get("gate") or {}).get("metrics", [])]
    if gated:
        return gated
    primary = "tpot_s" if result["samples"].get("tpot_s") else "e2e_s"
    return [primary, "ttft_s"]


def _panel(result: dict[str, Any], metric: str, label: str) -> Panel:
    if metric.endswith("_s"):
        scale, unit = 1e3, "ms"
    else:
        scale, unit = 1.0, "req/s" if metric.endswith("_rps") else "tok/s"
    current = [v * scale for v in result["samples"].get(metric, []) if v is not None]
    base = [v * scale for v in baseline_samples(result, metric)]
    return Panel(f"{_TITLES.get(metric, metric)} ({unit})", current, base, label)


def _distributions(document: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    rank = {v: i for i, v in enumerate(ORDER)}
    results = sorted(
        document.get("results", []),
        key=lambda r: (
            rank.get((r.get("gate") or {}).get("verdict", ""), len(ORDER)),
            r["nodeid"],
            r["name"],
            r["backend"],
        ),
    )
    out = []
    for index, r in enumerate(results[:MAX_DISTRIBUTIONS]):
        gate = r.get("gate") or {}
        label = "reference" if gate.get("mode") == "relative" else "baseline"
        where = bench_label(r["nodeid"], r["name"], r["backend_id"], r["backend"])
        title = f"{where} [{r['backend_id']}]"
        panels = [_panel(r, m, label) for m in _panel_metrics(r)]
        svg = distribution_chart(panels, title=title, chart_id=f"dist{index}")
        if svg is not None:
            out.append(
                {
                    "title": title,
                    "nodeid": r["nodeid"],
                    "verdict": gate.get("verdict", ""),
                    "against": gate.get("against", ""),
                    "svg": svg,
                }
            )
    return out, max(0, len(results) - MAX_DISTRIBUTIONS)


def _prompt(params: dict[str, Any]) -> str:
    """``llm_bench``'s prompt, or the first few of ``llm_load``'s prompts with their count."""
    prompts = params.get("prompts")
    if params.get("prompt") is not None or not isinstance(prompts, list):
        return prompt_text(params.get("prompt"))
    shown = prompts[:MAX_PROMPTS]
    head = f"{len(prompts)} prompt(s)" + (
        f", the first {len(shown)}:" if len(shown) < len(prompts) else ":"
    )
    return "\n\n".join([head, *(f"[{i + 1}] {prompt_text(p)}" for i, p in enumerate(shown))])


def _samples(document: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in sorted(document.get("results", []), key=lambda r: (r["nodeid"], r["name"])):
        generations = r.get("generations") or [{}]
        out.append(
            {
                "title": bench_label(r["nodeid"], r["name"], r["backend_id"], r["backend"]),
                "backend_id": r["backend_id"],
                "prompt": _clip(_prompt(r["params"])),
                "output": _clip(generations[0].get("text")),
                "params": ", ".join(
                    f"{k}={v}"
                    for k, v in r["params"].items()
                    if k not in ("prompt", "prompts", "options")
                ),
            }
        )
    return out


def _judged(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "title": bench_label(e["nodeid"], "", e["backend_id"] or "", e["backend"] or ""),
            "backend_id": e["backend_id"] or "-",
            "call": e.get("call", 0),
            "score": e.get("score"),
            "prompt": _clip(prompt_text(e.get("prompt"))),
            "response": _clip(e.get("response")),
            "reference": _clip(e.get("reference")) if e.get("reference") else "",
            "reason": _clip(e.get("reason")),
            "judge": e.get("judge", ""),
        }
        for e in document.get("quality", [])
    ]


def _environment(document: dict[str, Any]) -> list[tuple[str, str]]:
    env = document.get("environment") or {}
    commit = env.get("commit_info") or {}
    ram = env.get("ram_bytes")
    branch = commit.get("branch")
    where = [commit.get("id", "?")]
    where += [f"on {branch}"] if branch and branch != "(unknown)" else []
    where += ["dirty"] if commit.get("dirty") else []
    pairs = [
        ("Created", str(document.get("created", ""))),
        ("CPU", f"{env.get('cpu_model', '?')} ({env.get('cpu_count', '?')} cores)"),
        ("Memory", f"{ram / 2**30:.1f} GiB" if isinstance(ram, (int, float)) else "?"),
        ("GPUs", ", ".join(env.get("gpus") or []) or "none"),
        ("OS", str(env.get("os", "?"))),
        ("Python", str(env.get("python", "?"))),
        ("Commit", " ".join(map(str, where))),
    ]
    libraries = env.get("libraries") or {}
    pairs += [(name, str(ver)) for name, ver in libraries.items()]
    return pairs


def _settings(document: dict[str, Any]) -> list[tuple[str, str]]:
    def show(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        if isinstance(value, list):
            return ", ".join(map(str, value)) or "-"
        return "-" if value is None else str(value)

    return [(key, show(value)) for key, value in (document.get("settings") or {}).items()]


def _backend(record: dict[str, Any]) -> dict[str, str]:
    load = record.get("load_s")
    model = record.get("model_file") or {}
    return {
        "id": str(record.get("id", "")),
        "role": str(record.get("role") or "candidate"),
        "library": f"{record.get('library') or '-'} {record.get('library_version') or ''}",
        "load": f"{load:.2f}" if isinstance(load, (int, float)) else "-",
        "model": f"{model.get('path')} (sha256 {str(model.get('sha256'))[:12]})" if model else "-",
        "spec": str(record.get("spec", "")),
    }


def _quality_gate(document: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for c in document.get("quality_gate", []):
        comparison = quality_comparison(c)
        shown = comparison.to_json()
        if shown.get("ci_low") is None or shown.get("ci_high") is None:
            shown["ci_low"] = shown["ci_high"] = None  # one bound alone is no interval
        out.append({**shown, "line": comparison.describe()})
    return out


def _context(document: dict[str, Any]) -> dict[str, Any]:
    found = findings(document)
    distributions, left_out = _distributions(document)
    points = backend_points(document)
    return {
        "doc": document,
        "created": document.get("created", ""),
        "version": (document.get("plugin") or {}).get("version", ""),
        "counts": verdict_counts(document),
        "regressions": [f for f in found if f.verdict == Verdict.REGRESSION],
        "others": [f for f in found if f.verdict != Verdict.REGRESSION],
        "backend_errors": document.get("backend_errors") or {},
        "output_problems": output_problems(document.get("results") or []),
        "columns": COLUMNS,
        "rows": rows(document),
        "quality_gate": _quality_gate(document),
        "tradeoff": tradeoff_chart(points, chart_id="tradeoff"),
        "points": points,
        "distributions": distributions,
        "distributions_left_out": left_out,
        "samples": _samples(document),
        "judged": _judged(document),
        "environment": _environment(document),
        "backends": [_backend(b) for b in document.get("backends") or []],
        "settings": _settings(document),
        "command": shlex.join(str(a) for a in document.get("command") or []),
    }


def render_html(document: dict[str, Any]) -> str:
    """The report page for one (already redacted) results document."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_llmperf", "templates"),
        # On for every template whatever its file name: select_autoescape would leave .j2 off.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["svg"] = Markup  # matplotlib output: its text is XML-escaped by matplotlib
    return env.get_template("run.html.j2").render(_context(document))
