"""The per-run reports: HTML (opened in real headless Chromium), Markdown, pytest-benchmark JSON.

One scenario feeds them: two ``fake`` backends, a baseline saved at 2 ms per token, then a run
at 8 ms (every benchmark regresses, far beyond the 30% drift allowance of a single stored run)
where a scripted judge (real HTTP, scripted_openai.py) rates fake:m as before and fake:n much
worse. Prompts, responses and a test id carry markup and template syntax that must stay text.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from chromium import chromium_path, open_page
from scripted_openai import Reply, ScriptedServer
from test_judge import _openai_stack_loaded  # noqa: F401  (module fixture: loads openai once)

from pytest_llmperf import numeric
from pytest_llmperf._report_data import COLUMNS, rows
from pytest_llmperf.benchmark_json import TIMING_METRIC, to_benchmark_json
from pytest_llmperf.history import check_document
from pytest_llmperf.report_html import render_html
from pytest_llmperf.report_markdown import escape, render_markdown

ATTACK = (
    '<script>alert(1)</script> "><img src=x onerror=alert(2)> {{ 7*7 }} {% if 1 %}x{% endif %} a|b'
)
BAD_ID = "<b>bold</b>$x$|y"

TESTS = (
    "import pytest\n\nATTACK = "
    + repr(ATTACK)
    + """


@pytest.mark.llm_perf(max_tokens=4, warmup=0)
def test_judged(llm_bench, llm_judge):
    for i in range(6):  # 6 pairs: exact p = 1/64, under alpha 0.05 / 2 backends
        llm_judge(f"question {i}: " + ATTACK, f"answer {i}: " + ATTACK)
    llm_bench("Say hello. " + ATTACK)


@pytest.mark.parametrize("word", ["w"], ids=["""
    + repr(BAD_ID)
    + """])
@pytest.mark.llm_perf(max_tokens=4, warmup=0)
def test_plain(llm_bench, word):
    llm_bench("plain " + word)
"""
)


def rating(n: int) -> Reply:
    return Reply(text=json.dumps({"rating": n, "reason": f"rated {n}: " + ATTACK}))


@pytest.fixture
def server():
    with ScriptedServer() as s:
        yield s


@pytest.fixture
def scenario(fake, server, monkeypatch):
    """Both runs done; returns the pytester directory. The second run wrote every report."""
    fake.makepyfile(test_scenario=TESTS)
    args = [
        "--llm=fake:m",
        "--llm=fake:n",
        f"--llm-judge=openai:judge@{server.url}",
        "--llm-judge-no-cache",
        "-p",
        "no:cacheprovider",
    ]
    monkeypatch.setenv("FAKE_DELAY_MS", "2")
    server.script = [rating(8)]
    saved = fake.runpytest(*args, "--llm-save-baseline", "--llm-benchmark-json=before.json")
    saved.assert_outcomes(passed=4)
    monkeypatch.setenv("FAKE_DELAY_MS", "8")
    # fake:m's test runs first: its six verdicts stay at 8, fake:n's drop to 2.
    server.script = [rating(8)] * 6 + [rating(2)]
    result = fake.runpytest(
        *args,
        "--llm-json=out.json",
        "--llm-html=report.html",
        "--llm-markdown=summary.md",
        "--llm-benchmark-json=after.json",
    )
    result.assert_outcomes(failed=4)
    return fake


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [name for name, _ in attrs]


def test_html_report_is_self_contained_and_reads_right_in_chromium(scenario, tmp_path):
    if chromium_path() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    page_path = scenario.path / "report.html"
    source = page_path.read_text()
    # The source: the attack is escaped text, never markup or a template directive.
    parser = _Tags()
    parser.feed(source)
    assert "script" not in parser.tags and "img" not in parser.tags
    assert not [a for a in parser.attrs if a.startswith("on")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in source
    assert "{{ 7*7 }}" in source and "{% if 1 %}" in source
    assert not re.search(r"(src|href)=\"?(https?:)?//", source)  # nothing to fetch

    screenshot = tmp_path / "report.png"
    page = open_page(
        page_path,
        screenshot,
        expressions={
            "elements": "[...document.querySelectorAll('script, img, iframe, object, embed')]"
            ".map(e => e.tagName)",
            "handlers": "[...document.querySelectorAll('*')].flatMap(e => [...e.attributes])"
            ".map(a => a.name).filter(n => n.startsWith('on'))",
            "sections": "[...document.querySelectorAll('main > section')].map(s => s.id)",
            "regressions": "[...document.querySelectorAll('#regressions .panel.bad .finding')]"
            ".map(f => f.textContent.replace(/\\s+/g, ' ').trim())",
            "header": "[...document.querySelectorAll('#summary-table thead th')]"
            ".map(th => th.textContent.trim())",
            "rows": "[...document.querySelectorAll('#summary-table tbody tr')]"
            ".map(tr => [...tr.cells].map(td => td.innerText.replace(/\\s+/g, ' ').trim()))",
            "aligned": "getComputedStyle(document.querySelector('#summary-table td.num'))"
            ".textAlign",
            "tradeoff_svgs": "document.querySelectorAll('#tradeoff-chart svg').length",
            "distribution_svgs": "document.querySelectorAll('#distributions figure svg').length",
            "pre_texts": "[...document.querySelectorAll('pre')].map(p => p.textContent)",
            "command": "document.getElementById('command').textContent",
            "regression_colour": "getComputedStyle(document.querySelector("
            "'.chip.v-regression')).color",
        },
    )
    print(f"screenshot of the HTML report: {page.screenshot}")
    assert page.screenshot.stat().st_size > 10_000
    assert page.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.problems == []  # no console messages, exceptions or log entries
    assert page.requests == [page_path.resolve().as_uri()]  # the page fetched nothing
    v = page.values
    assert v["elements"] == [] and v["handlers"] == []
    assert v["sections"][0] == "regressions"
    regressions = v["regressions"]
    # 4 latency regressions (2 tests x 2 backends) and fake:n's quality.
    assert len(regressions) == 5
    assert sum("quality of fake:n" in r for r in regressions) == 1
    assert all(re.search(r"regressed \+\d+\.\d%", r) for r in regressions if "(latency)" in r)
    assert v["header"][:3] == ["Test", "Backend", "Runs"]
    for column in ("TTFT ms", "TPOT ms", "Decode tok/s", "Seconds/token s", "Quality %"):
        assert column in v["header"]
    assert v["header"][-1] == "Verdict"
    rows = v["rows"]
    assert len(rows) == 4
    labels = sorted((r[0], r[1]) for r in rows)
    assert labels == [
        ("test_judged", "fake:m"),
        ("test_judged", "fake:n"),
        (f"test_plain[fake:m-{BAD_ID}]", "fake:m"),
        (f"test_plain[fake:n-{BAD_ID}]", "fake:n"),
    ]
    quality = v["header"].index("Quality %")
    tpot = v["header"].index("TPOT ms")
    for row in rows:
        assert row[-1] == "REGRESSION"
        # Measured value, then its change (+ about 300%), 90% CI, the gate's verdict.
        assert re.fullmatch(r"\d+\.\d\d \+\d+\.\d% \[[+-]\d+%\.\.\+\d+%\] REGRESSION", row[tpot])
        judged = row[0] == "test_judged"
        if not judged:
            assert row[quality] == "n/a"
        elif row[1] == "fake:m":
            assert re.fullmatch(r"77\.8 \+0\.0 pts PASS", row[quality])
        else:
            assert re.fullmatch(r"11\.1 -66\.7 pts REGRESSION", row[quality])
    assert v["aligned"] == "right"
    assert v["regression_colour"] == "rgb(185, 28, 28)"
    assert v["tradeoff_svgs"] == 1
    assert v["distribution_svgs"] == 4
    assert any(ATTACK in text for text in v["pre_texts"])  # prompts and responses, as text
    # The exact command line (in-process pytester runs record this process's sys.argv).
    doc = json.loads((scenario.path / "out.json").read_text())
    assert v["command"] == shlex.join(doc["command"]) and doc["command"] == sys.argv
    dom = page.dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "<b>bold</b>" not in dom and "&lt;b&gt;bold&lt;/b&gt;$x$" in dom


def test_markdown_summary_counts_regressions_and_escapes_everything(scenario):
    text = (scenario.path / "summary.md").read_text()
    doc = json.loads((scenario.path / "out.json").read_text())
    assert check_document(doc) is None  # and llmperf reads it, judge verdicts and all
    assert text.rstrip("\n") == render_markdown(doc)
    assert "- latency gate: **4 REGRESSION**" in text
    assert "- quality gate: **1 REGRESSION**, 1 PASS" in text
    section = text.split("### Regressions", 1)[1].split("###", 1)[0]
    items = [line for line in section.splitlines() if line.startswith("- **REGRESSION**")]
    assert len(items) == 5
    assert (
        sum("quality of fake:n (quality): 6 pairs, mean diff -66.7 points" in i for i in items) == 1
    )
    assert all(re.search(r"TPOT regressed \+\d+\.\d%", i) for i in items if "(latency)" in i)
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| Test | Backend | TTFT ms | TPOT ms |")
    assert len(table) == 2 + 4  # header, alignment, one row per benchmark
    assert table[1] == "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
    for line in table[2:]:
        # Every row has exactly the header's cells: the id's "|" is escaped, not a new cell.
        assert len(re.split(r"(?<!\\)\|", line)) == len(re.split(r"(?<!\\)\|", table[0]))
    plain = next(line for line in table if "test\\_plain" in line)
    assert "&lt;b&gt;bold&lt;/b&gt;\\$x\\$\\|y" in plain  # $ would start math on GitHub
    assert "<b>" not in text and "<script" not in text and "<img" not in text


def test_markdown_escape_leaves_no_markup():
    assert escape(ATTACK) == (
        '&lt;script&gt;alert(1)&lt;/script&gt; "&gt;&lt;img src=x onerror=alert(2)&gt; '
        "{{ 7\\*7 }} {% if 1 %}x{% endif %} a\\|b"
    )
    assert escape("a\n| b _c_ [l](u) `x` $m$") == "a \\| b \\_c\\_ \\[l\\](u) \\`x\\` \\$m\\$"


def _benchmark_compare(*files: Path, cwd: Path) -> str:
    script = Path(sys.executable).with_name("pytest-benchmark")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pytest_benchmark"]
    out = subprocess.run(
        [*command, "compare", *map(str, files), "--columns=min,median,mean,rounds"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        check=True,
    )
    return out.stdout


def test_benchmark_json_is_read_by_pytest_benchmark_compare(scenario):
    before = scenario.path / "before.json"
    after = scenario.path / "after.json"
    doc = json.loads((scenario.path / "out.json").read_text())
    exported = json.loads(after.read_text())
    assert exported == json.loads(json.dumps(to_benchmark_json(doc)))
    assert set(exported) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert len(exported["benchmarks"]) == 4
    for bench, result in zip(exported["benchmarks"], doc["results"], strict=True):
        stats = bench["stats"]
        assert stats["data"] == result["samples"][TIMING_METRIC]
        assert stats["rounds"] == result["runs"] and stats["iterations"] == 1
        assert stats["median"] == pytest.approx(result["stats"][TIMING_METRIC]["median"])
        assert stats["ops"] == pytest.approx(len(stats["data"]) / sum(stats["data"]))
        extra = bench["extra_info"]
        assert extra["tpot_s_median"] == result["stats"]["tpot_s"]["median"]
        assert extra["verdict"] == "REGRESSION" and extra["backend"] == result["backend"]
        assert bench["fullname"] == result["nodeid"]
    out = _benchmark_compare(before, after, cwd=scenario.path)
    # One table per workload, both backends and both files in it.
    assert out.count("benchmark 'test_scenario.py::test_judged': 4 tests") == 1
    for file in ("before", "after"):
        for backend in ("fake:m", "fake:n"):
            assert re.search(rf"test_judged\[{backend}\] \([^)]*{file}\)\s+\d", out), out
    # The slower run shows as slower in pytest-benchmark's own table (ratio to the fastest).
    after_row = re.search(r"test_judged\[fake:m\] \([^)]*after\)\s+[\d.,]+ \(([\d.]+)\)", out)
    assert after_row is not None and float(after_row[1]) > 2


def test_relative_mode_plots_the_reference_and_deltas_every_metric(fake):
    fake.makepyfile(
        """
        import pytest

        @pytest.mark.llm_perf(max_tokens=4, warmup=0)
        def test_a(llm_bench):
            llm_bench("hello there")
        """
    )
    result = fake.runpytest(
        "--llm=fake:cand?delay_ms=8",
        "--llm-compare-to=fake:ref?delay_ms=2",
        "--llm-no-confirm",
        "--llm-json=out.json",
        "--llm-html=out.html",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(failed=1)
    doc = json.loads((fake.path / "out.json").read_text())
    [res] = doc["results"]
    assert res["gate"]["mode"] == "relative" and "baseline_samples" not in res["gate"]
    [row] = rows(doc)
    cells = {c.metric: cell for c, cell in zip(COLUMNS, row.cells, strict=True)}
    # Gated metrics carry the gate's verdict; the others a delta against the same reference.
    assert cells["tpot_s"].verdict == "REGRESSION"
    decode = cells["decode_tps"]
    assert decode.verdict == "" and decode.note.startswith("not gated")
    assert re.fullmatch(r"-\d+\.\d%", decode.delta) and float(decode.delta[:-1]) < -50
    assert (cells["quality"].text, cells["cost_usd"].text) == ("n/a", "n/a")
    page = (fake.path / "out.html").read_text()
    [figure] = re.findall(r'<figure class="chart">.*?</figure>', page, re.S)
    assert "vs fake:ref?delay_ms=2 (same job, interleaved)" in figure
    ticks = re.findall(r">(reference|current|baseline)</text>", figure)
    assert sorted(set(ticks)) == ["current", "reference"]


def test_a_run_without_baseline_or_judge_says_so():
    doc = {
        "created": "2026-01-01T00:00:00+00:00",
        "results": [],
        "quality": [],
        "quality_gate": [],
        "command": ["pytest", "--llm-html=x.html"],
    }
    page = render_html(doc)
    assert "No regressions (nothing was compared with a baseline)." in page
    assert "n/a: no backend has both latency samples and judged quality" in page
    assert "No latency samples in this run." in page
    assert "<svg" not in page
    text = render_markdown(doc)
    assert "- nothing was compared with a baseline" in text and "| Test |" not in text
    assert to_benchmark_json(doc)["benchmarks"] == []


def test_a_load_test_shows_its_first_prompts_with_their_count(pytester):
    from load_server import serve

    pytester.makepyfile(
        """
        PROMPTS = ["<script>alert(1)</script> one", "two & three", "third", "fourth", "fifth"]

        def test_serving(llm_load):
            llm_load(PROMPTS, concurrency=2, requests=10, warmup=0)
        """
    )
    with serve() as server:
        result = pytester.runpytest(
            f"--llm=openai:m@{server.url}", "--llm-html=out.html", "-p", "no:cacheprovider"
        )
    result.assert_outcomes(passed=1)
    page = (pytester.path / "out.html").read_text()
    [prompt] = re.findall(r"<h3>Prompt</h3><pre>(.*?)</pre>", page, re.S)
    assert prompt == (
        "5 prompt(s), the first 3:\n\n[1] &lt;script&gt;alert(1)&lt;/script&gt; one\n\n"
        "[2] two &amp; three\n\n[3] third"
    )
    assert "fourth" not in page
    [params] = re.findall(
        r"<summary>test_serving[^<]*<span[^>]*>[^<]*</span></summary>\s*"
        r'<div class="muted">(.*?)</div>',
        page,
        re.S,
    )
    assert "prompts=" not in params and "concurrency=2" in params


def _null_every_float(value):
    if isinstance(value, float):
        return None
    if isinstance(value, dict):
        return {k: _null_every_float(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_null_every_float(v) for v in value]
    return value


def test_reports_render_a_document_whose_every_float_is_null(scenario):
    # What the writers make of NaN and infinity (null, see results.finite_document), taken to
    # the limit: every figure of a run with regressions and a quality gate is missing.
    document = _null_every_float(json.loads((scenario.path / "out.json").read_text()))
    page = render_html(document)
    summary = render_markdown(document)
    assert "REGRESSION" in page and "REGRESSION" in summary
    assert "n/a" in page and "n/a" in summary


NONFINITE_CONFTEST = """

def pytest_llmperf_result(config, result):
    # Degenerate figures as a gate or a summary can produce them (a ratio against a zero
    # median, a median of nothing).
    if result.get("gate"):
        result["gate"]["metrics"][0]["ratio"] = float("inf")
        result["gate"]["metrics"][0]["ci_high"] = float("inf")
    result["stats"]["tpot_s"]["median"] = float("nan")
"""


def test_a_non_finite_metric_loses_no_output_file(fake, monkeypatch):
    fake.makeconftest(fake.path.joinpath("conftest.py").read_text() + NONFINITE_CONFTEST)
    fake.makepyfile(test_x="def test_a(llm_bench):\n    llm_bench('hi', max_tokens=3)\n")
    monkeypatch.setenv("FAKE_DELAY_MS", "1")
    args = ["--llm=fake:m", "--llm-runs=4", "--llm-warmup=0"]
    fake.runpytest(*args, "--llm-save-baseline").assert_outcomes(passed=1)
    outputs = {
        "json": "out.json",
        "html": "report.html",
        "markdown": "summary.md",
        "benchmark-json": "bench.json",
    }
    result = fake.runpytest(
        *args, *(f"--llm-{flag}={name}" for flag, name in outputs.items()), "--llm-history=h"
    )
    result.assert_outcomes(passed=1)
    assert "could not write" not in result.stdout.str()
    result.stdout.fnmatch_lines(["llmperf: 3 value(s) were not finite numbers*"])
    for name in outputs.values():
        assert (fake.path / name).stat().st_size > 0
    doc = numeric.json_loads((fake.path / "out.json").read_text())  # strict: no NaN
    assert doc["nonfinite"] == {
        "results[0].gate.metrics[0].ratio": "inf",
        "results[0].gate.metrics[0].ci_high": "inf",
        "results[0].stats.tpot_s.median": "nan",
    }
    metric = doc["results"][0]["gate"]["metrics"][0]
    assert (metric["ratio"], metric["ci_high"]) == (None, None)
    assert check_document(doc) is None  # llmperf show / compare / report read it
    [entry] = (fake.path / "h").glob("*.json")
    assert numeric.json_loads(entry.read_text())["nonfinite"] == doc["nonfinite"]
    assert "3 value(s) were not finite numbers" in (fake.path / "summary.md").read_text()
    html = (fake.path / "report.html").read_text()
    assert 'id="nonfinite">3 value(s) were not finite numbers' in html
    assert "<code>results[0].gate.metrics[0].ratio</code> (inf)" in html
    bench = numeric.json_loads((fake.path / "bench.json").read_text())
    assert bench["nonfinite"] == doc["nonfinite"]
