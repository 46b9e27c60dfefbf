"""The ``llmperf`` command: show, compare, merge, report, run for real (in-process and as the
installed script) on documents from real plugin runs and on synthetic nightly histories."""

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nightly_docs import commit_of, nights, regression_gate

from pytest_llmperf.cli import main
from pytest_llmperf.history import append_run, read_document
from pytest_llmperf.report_html import render_html

BENCH = """
def test_bench(llm_bench):
    llm_bench("hello there", max_tokens=4)
"""


def llmperf(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def runs(fake, monkeypatch) -> tuple[Path, Path]:
    """a.json and b.json from two real runs of the plugin; B is about 6x slower per token."""
    fake.makepyfile(test_bench=BENCH)
    for name, delay in (("a", "1"), ("b", "6")):
        monkeypatch.setenv("FAKE_DELAY_MS", delay)
        result = fake.runpytest("--llm=fake:m", "--llm-runs=10", f"--llm-json={name}.json")
        result.assert_outcomes(passed=1)
    return fake.path / "a.json", fake.path / "b.json"


def edited(path: Path, to: Path, change) -> Path:
    doc = json.loads(path.read_text())
    change(doc)
    to.write_text(json.dumps(doc))
    return to


def on_machine(node: str):
    def change(doc):
        doc["environment"]["machine_info"]["node"] = node

    return change


# --- show ----------------------------------------------------------------------------------


def test_show_prints_the_summary_table(runs, capsys):
    code, out, _ = llmperf(capsys, "show", runs[0], "--width", "120")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{runs[0]}: created ")
    header = next(line for line in lines if line.startswith("test "))
    assert header.split() == [
        *("test", "backend", "runs", "TTFT", "ms", "TPOT", "ms", "tok/s", "s/token", "tokens")
    ]
    row = lines[lines.index(header) + 2].split()
    assert row[:3] == ["test_bench", "fake:m", "10"]
    tpot_ms = read_document(runs[0])["results"][0]["stats"]["tpot_s"]["median"] * 1e3
    assert float(row[4]) == pytest.approx(tpot_ms, abs=0.01)


# --- compare -------------------------------------------------------------------------------


def test_compare_finds_the_slowdown_and_exits_1(runs, capsys):
    code, out, _ = llmperf(capsys, "compare", *runs, "--width", "140")
    assert code == 1
    assert re.search(r"test_bench\[fake:m\]\s+fake:m\s+tpot_s .* REGRESSION", out)
    assert "REGRESSION test_bench.py::test_bench[fake:m] [fake:m] tpot_s: TPOT regressed +" in out
    # Two separate runs are a stored baseline of one run: the gate's 30% drift allowance.
    assert "tolerance 30% widened from 5% for drift" in out
    assert "note: 1 stored run(s) < 3: conservative 30% drift allowance" in out
    assert out.rstrip().endswith("llmperf compare: 2 REGRESSION")


def test_compare_the_other_way_is_an_improvement_and_exits_0(runs, capsys):
    code, out, _ = llmperf(capsys, "compare", runs[1], runs[0], "--drift", "0")
    assert code == 0
    assert "IMPROVEMENT test_bench.py::test_bench[fake:m] [fake:m] tpot_s: TPOT improved -" in out
    assert "tolerance 5%)" in out  # --drift 0: the configured tolerance as is


def test_compare_a_file_with_itself_passes(runs, capsys):
    code, out, _ = llmperf(capsys, "compare", runs[0], runs[0], "--metric", "e2e_s")
    assert code == 0
    # Identical sides never regress; a busy machine can leave a trend in the samples
    # themselves, which the gate's rule calls UNSTABLE (on both sides alike).
    assert re.search(r"e2e_s .* (PASS|UNSTABLE)", out)
    assert "REGRESSION" not in out


def test_compare_refuses_backends_measured_differently_unless_forced(runs, capsys, tmp_path):
    def other_cpu(doc):
        doc["backends"][0]["key"]["strict"]["cpu_model"] = "Another CPU"

    b = edited(runs[1], tmp_path / "b.json", other_cpu)
    code, out, _ = llmperf(capsys, "compare", runs[0], b)
    assert code == 0
    assert "REFUSED, measured differently: cpu_model: " in out
    assert "'Another CPU'" in out
    code, out, _ = llmperf(capsys, "compare", runs[0], b, "--force")
    assert code == 1


def test_compare_lists_benchmarks_in_one_file_only(runs, capsys, tmp_path):
    def renamed(doc):
        doc["results"][0]["nodeid"] += "x"

    b = edited(runs[1], tmp_path / "b.json", renamed)
    code, out, _ = llmperf(capsys, "compare", runs[0], b)
    assert code == 0
    assert "nothing to compare" in out
    assert "only in A: test_bench.py::test_bench[fake:m] [fake:m]" in out
    assert "only in B: test_bench.py::test_bench[fake:m]x [fake:m]" in out


# --- merge ---------------------------------------------------------------------------------


def test_merge_keeps_each_machine_apart(runs, capsys, tmp_path):
    b = edited(runs[1], tmp_path / "b.json", on_machine("ci-b"))
    out_path = tmp_path / "m.json"
    code, out, _ = llmperf(capsys, "merge", runs[0], b, "-o", out_path)
    assert code == 0
    assert "merged 2 run(s) from 2 file(s), 2 result(s)" in out
    merged = read_document(out_path)
    host = read_document(runs[0])["environment"]["machine_info"]["node"]
    assert [s["machine"] for s in merged["sources"]] == [host, "ci-b"]
    assert [s["file"] for s in merged["sources"]] == [str(runs[0]), str(b)]
    assert [s["command"] for s in merged["sources"]] == [
        read_document(p)["command"] for p in (runs[0], b)
    ]
    assert [(r["backend_id"], r["source"]) for r in merged["results"]] == [
        (f"fake:m@{host}", 0),
        ("fake:m@ci-b", 1),
    ]
    assert [r["id"] for r in merged["backends"]] == [f"fake:m@{host}", "fake:m@ci-b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "m.json"]  # no temp file
    # ... and every reader takes it.
    code, out, _ = llmperf(capsys, "show", out_path, "--width", "120")
    assert code == 0
    assert "merged from 2 run(s):" in out
    assert re.search(rf"test_bench\s+fake:m@{re.escape(host)}\s+10", out)
    assert re.search(r"test_bench\s+fake:m@ci-b\s+10", out)
    html = render_html(merged)
    assert "fake:m@ci-b" in html
    code, out, _ = llmperf(capsys, "compare", out_path, out_path)
    assert code == 0
    # The file against itself: never a regression. A busy machine can leave a trend in the
    # samples themselves, which the gate's rule calls UNSTABLE on both sides alike.
    counts = {
        verdict: int(n)
        for n, verdict in (
            part.split(" ", 1)
            for part in out.rstrip().rsplit("llmperf compare: ", 1)[1].split(", ")
        )
    }
    assert sum(counts.values()) == 4
    assert set(counts) <= {"PASS", "UNSTABLE"}


def test_merge_refuses_the_same_benchmark_twice_from_one_machine(runs, capsys, tmp_path):
    code, _, err = llmperf(capsys, "merge", *runs, "-o", tmp_path / "m.json")
    assert code == 2
    assert err.startswith("llmperf: error: cannot merge: test_bench.py::test_bench[fake:m]")
    assert "which ran on the same machine" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.json").exists()


def test_merge_refuses_different_schema_versions(runs, capsys, tmp_path):
    def newer(doc):
        doc["schema_version"] = 2

    b = edited(runs[1], tmp_path / "b.json", newer)
    code, _, err = llmperf(capsys, "merge", runs[0], b, "-o", tmp_path / "m.json")
    assert code == 2
    assert "cannot merge files of different schema_version" in err
    assert f"{runs[0]} has 1, {b} has 2" in err


def test_merge_of_different_benchmarks_needs_no_suffix_and_flattens(runs, capsys, tmp_path):
    def other_test(doc):
        doc["results"][0]["nodeid"] = "test_other.py::test_other[fake:m]"

    b = edited(runs[1], tmp_path / "b.json", other_test)
    c = edited(runs[1], tmp_path / "c.json", on_machine("ci-c"))
    ab, abc = tmp_path / "ab.json", tmp_path / "abc.json"
    assert llmperf(capsys, "merge", runs[0], b, "-o", ab)[0] == 0
    assert [r["backend_id"] for r in read_document(ab)["results"]] == ["fake:m", "fake:m"]
    assert llmperf(capsys, "merge", ab, c, "-o", abc)[0] == 0
    merged = read_document(abc)
    assert len(merged["sources"]) == 3  # carried over, not nested
    assert [r["source"] for r in merged["results"]] == [0, 1, 2]
    assert merged["sources"][2]["machine"] == "ci-c"
    # test_bench ran on two machines now; test_other on one.
    ids = {(r["nodeid"].split("::")[1], r["backend_id"]) for r in merged["results"]}
    assert ("test_other[fake:m]", "fake:m") in ids
    assert ("test_bench[fake:m]", "fake:m@ci-c") in ids


# --- usage and input errors: exit 2, one line, never a traceback ---------------------------


@pytest.mark.parametrize("command", ["show", "compare", "merge", "report"])
def test_each_subcommand_has_help(capsys, command):
    code, out, _ = llmperf(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: llmperf {command}")


def test_usage_errors_exit_2(capsys):
    code, _, err = llmperf(capsys)
    assert code == 2
    assert "llmperf: error: the following arguments are required: COMMAND" in err
    code, _, err = llmperf(capsys, "compare", "a.json")
    assert (code, err.splitlines()[-1]) == (
        2,
        "llmperf compare: error: the following arguments are required: current",
    )
    code, _, err = llmperf(capsys, "compare", "a", "b", "--tolerance", "tpot_s=lots")
    assert code == 2
    assert "tolerance 'lots' for tpot_s is not a number" in err
    code, _, err = llmperf(capsys, "report", "d", "--min-change", "much")
    assert code == 2
    assert "expected a percentage from 0% to 999% like 5% or 0.05, not 'much'" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "d", "--min-change", "nan"], "--min-change: expected a percentage from 0%"),
        (["report", "d", "--min-change", "1e400%"], "--min-change: expected a percentage"),
        (["compare", "a", "b", "--drift", "inf"], "--drift: expected a percentage from 0%"),
        (["compare", "a", "b", "--alpha", "nan"], "--alpha: expected a number in (0, 0.5]"),
        (["show", "f", "--width", "99999999999"], "--width: expected a whole number from 1 to"),
        (["report", "d", "--last", str(10**30)], "--last: expected a whole number from 1 to"),
        (["report", "d", "--max-charts", "1.5"], "--max-charts: expected a whole number"),
    ],
)
def test_option_values_are_finite_and_in_range(capsys, args, message):
    code, out, err = llmperf(capsys, *args)
    assert (code, out) == (2, "")
    assert message in err.splitlines()[-1]


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "invalid.json").write_text('{"schema_version": 1, "created": ')
    (tmp_path / "baseline.json").write_text('{"schema_version_": 1, "benchmarks": {}}')
    doc = nights(1, lambda n, t: 1.0)[0]
    (tmp_path / "future.json").write_text(json.dumps({**doc, "schema_version": 99}))
    return {
        "missing": (tmp_path / "missing.json", "missing.json: no such file"),
        "invalid": (tmp_path / "invalid.json", "is not valid JSON (line 1 column"),
        "wrong schema": (tmp_path / "baseline.json", "no schema_version (a baseline file"),
        "future": (tmp_path / "future.json", "schema_version 99 is newer than this"),
    }


@pytest.mark.parametrize("command", ["show", "compare", "merge"])
def test_bad_input_files_give_one_clear_line(capsys, tmp_path, command):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(nights(1, lambda n, t: 1.0)[0]))
    for what, (path, message) in bad_inputs(tmp_path).items():
        if command == "merge" and what == "future":
            message = f"different schema_version: {good} has 1, {path} has 99"
        args = {
            "show": ["show", path],
            "compare": ["compare", good, path],
            "merge": ["merge", good, path, "-o", tmp_path / "out.json"],
        }[command]
        code, out, err = llmperf(capsys, *args)
        assert code == 2, (path, out, err)
        assert err.startswith("llmperf: error: ")
        assert message in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.json").exists()


def test_report_on_a_missing_empty_or_unreadable_history_exits_2(capsys, tmp_path):
    code, _, err = llmperf(capsys, "report", tmp_path / "nope", "-o", tmp_path / "n.html")
    assert (code, err) == (
        2,
        f"llmperf: error: history directory {tmp_path / 'nope'} does not exist\n",
    )
    (tmp_path / "empty").mkdir()
    code, _, err = llmperf(capsys, "report", tmp_path / "empty", "-o", tmp_path / "n.html")
    assert code == 2
    assert f"no readable result files in {tmp_path / 'empty'}; run pytest with --llm-history" in err
    (tmp_path / "empty" / "broken.json").write_text("{")
    code, _, err = llmperf(capsys, "report", tmp_path / "empty", "-o", tmp_path / "n.html")
    assert code == 2
    assert err.splitlines()[0].startswith("llmperf: warning: skipped ")
    assert "broken.json is not valid JSON" in err.splitlines()[0]
    assert "(1 unreadable, listed above)" in err.splitlines()[1]
    assert not (tmp_path / "n.html").exists()


# --- the installed script -----------------------------------------------------------------


def installed_llmperf() -> str:
    found = shutil.which("llmperf", path=str(Path(sys.executable).parent)) or shutil.which(
        "llmperf"
    )
    if found is None:
        pytest.fail("the llmperf console script is not installed: pip install -e .")
    return found


def test_the_installed_script_runs_and_fails_cleanly(runs, tmp_path):
    script = installed_llmperf()
    done = subprocess.run(
        [script, "compare", *map(str, runs)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert "TPOT regressed" in done.stdout
    done = subprocess.run(
        [script, "show", str(tmp_path / "nope.json")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr == f"llmperf: error: {tmp_path / 'nope.json'}: no such file\n"
    assert done.stdout == ""
    hist = tmp_path / "hist"
    for doc in nights(8, lambda n, t: 1.0 if n < 4 else 1.3):
        append_run(hist, doc)
    done = subprocess.run(
        [script, "report", str(hist), "-o", str(tmp_path / "n.html")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {tmp_path / 'n.html'} (8 night(s)" in done.stdout
    html = (tmp_path / "n.html").read_text()
    assert set(re.findall(r'<tr class="step" data-night="(\d+)"', html)) == {"4"}
    assert f"<code>{commit_of(4)[:10]}</code>" in html
    versions = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert versions.returncode == 0
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*\n", versions.stdout)


def test_report_reads_a_history_written_by_the_plugin(fake, monkeypatch, capsys):
    fake.makepyfile(test_bench=BENCH)
    for delay in ("1", "1", "3"):
        monkeypatch.setenv("FAKE_DELAY_MS", delay)
        result = fake.runpytest("--llm=fake:m", "--llm-runs=5", "--llm-history=hist")
        result.assert_outcomes(passed=1)
    code, out, _ = llmperf(capsys, "report", fake.path / "hist", "-o", fake.path / "n.html")
    assert code == 0
    assert "(3 night(s)" in out
    html = (fake.path / "n.html").read_text()
    assert 'test_bench.py::test_bench[fake:m] <span class="backend">on fake:m</span>' in html
    assert html.count("<svg") == 1
    # Three nights cannot hold a step of three nights on each side.
    assert 'class="step"' not in html


# --- report: steps and regressions over synthetic nights ----------------------------------

TESTS = ("test_chat", "test_code", "test_long", "test_short")


def report(capsys, tmp_path: Path, docs, *args: str) -> str:
    hist = tmp_path / "hist"
    for doc in docs:
        append_run(hist, doc)
    out_path = tmp_path / "nightly.html"
    code, out, err = llmperf(capsys, "report", hist, "-o", out_path, *args)
    assert code == 0, err
    assert f"llmperf: wrote {out_path} ({len(docs)} night(s)" in out
    return out_path.read_text()


def step_nights(html: str) -> set[int]:
    return {int(n) for n in re.findall(r'<tr class="step" data-night="(\d+)"', html)}


def rows(html: str, kind: str) -> list[str]:
    return re.findall(rf'<tr class="{kind}" data-night="\d+">(.*?)</tr>', html, re.S)


def test_report_marks_the_night_of_a_step_and_no_other(capsys, tmp_path):
    docs = nights(30, lambda n, t: 1.2 if t == "test_code" and n >= 17 else 1.0, tests=TESTS)
    html = report(capsys, tmp_path, docs, "--recent", "14")
    assert step_nights(html) == {17}
    steps = rows(html, "step")
    # Every latency metric of that one benchmark moved; nothing else did.
    assert all("test_code[fake:m]" in row for row in steps)
    metrics = {re.findall(r"<td>(\w+)</td>", row)[-1] for row in steps}
    assert {"tpot_s", "e2e_s", "ttft_s", "decode_tps", "sec_per_token"} >= metrics >= {"tpot_s"}
    tpot = next(row for row in steps if "<td>tpot_s</td>" in row)
    change = float(re.search(r"step \+([\d.]+)%", tpot).group(1))
    assert 12 < change < 28
    assert f"<code>{commit_of(17)[:10]}</code>" in tpot
    assert "2026-10-18 03:00" in tpot
    # Within the last 14 nights, so it is a regression with the commit that introduced it.
    regressions = rows(html, "regression")
    assert regressions
    assert all(f"<code>{commit_of(17)[:10]}</code>" in row for row in regressions)
    # On the chart: a vertical line labelled with the date and commit, on that chart only.
    charts = re.findall(r'<section class="chart[^"]*">(.*?)</section>', html, re.S)
    assert len(charts) == len(TESTS)
    labelled = [c for c in charts if f"10-18 {commit_of(17)[:7]} +" in c]
    assert len(labelled) == 1
    assert "test_code[fake:m]" in labelled[0]
    assert charts[0] is not None and "test_code[fake:m]" in charts[0]  # what changed comes first


def test_report_of_flat_nights_marks_nothing(capsys, tmp_path):
    html = report(capsys, tmp_path, nights(30, lambda n, t: 1.0, tests=TESTS))
    assert step_nights(html) == set()
    assert "No sustained shift in any metric." in html
    assert "None: no gate said REGRESSION" in html


def test_report_ignores_one_wild_night(capsys, tmp_path):
    docs = nights(30, lambda n, t: 1.8 if n == 12 else 1.0, tests=TESTS)
    assert step_nights(report(capsys, tmp_path, docs)) == set()


def test_report_marks_two_steps(capsys, tmp_path):
    def level(night, test):
        if test != "test_long":
            return 1.0
        return 1.0 if night < 10 else 1.3 if night < 20 else 1.0

    html = report(capsys, tmp_path, nights(30, level, tests=TESTS, seed=1))
    assert step_nights(html) == {10, 20}
    tpot = [row for row in rows(html, "step") if "<td>tpot_s</td>" in row]
    assert len(tpot) == 2
    assert 'class="worse">step +' in tpot[1]  # newest first: 10 was the slowdown
    assert 'class="better">step -' in tpot[0]


def test_report_lists_recent_gate_regressions_with_their_commit(capsys, tmp_path):
    docs = nights(
        10,
        lambda n, t: 1.0,
        gate=lambda n, t: regression_gate(1.18) if n == 8 else None,
    )
    html = report(capsys, tmp_path, docs, "--recent", "3")
    (row,) = rows(html, "regression")
    assert f"<code>{commit_of(8)[:10]}</code>" in row
    assert "gate REGRESSION +18.0%, tolerance 5%, p=1e-05" in row
    assert "1 REGRESSION" in html  # the nights table
    html = report(capsys, tmp_path / "older", docs, "--recent", "1")
    assert rows(html, "regression") == []


def test_report_includes_quality_scores_and_their_steps(capsys, tmp_path):
    docs = nights(20, lambda n, t: 1.0)
    for night, doc in enumerate(docs):
        score = 85.0 if night < 12 else 60.0
        doc["quality"] = [
            {
                "nodeid": doc["results"][0]["nodeid"],
                "backend": "fake:m",
                "backend_id": "fake:m",
                "score": score + (night % 3),
            }
        ]
    html = report(capsys, tmp_path, docs)
    (row,) = rows(html, "step")
    assert "<td>quality</td>" in row
    assert "step -2" in row  # points, not percent
    assert "quality % (0-100)" in html


def test_a_corrupt_file_in_the_history_is_reported_not_included(capsys, tmp_path):
    hist = tmp_path / "hist"
    docs = nights(6, lambda n, t: 1.0)
    for doc in docs:
        append_run(hist, doc)
    (hist / "20261231T000000Z_partial.json").write_text(json.dumps(docs[0])[:500])
    code, out, err = llmperf(capsys, "report", hist, "-o", tmp_path / "n.html")
    assert code == 0
    assert "(6 night(s)" in out
    assert err.startswith("llmperf: warning: skipped ")
    assert "20261231T000000Z_partial.json is not valid JSON" in err
    html = (tmp_path / "n.html").read_text()
    assert "1 file(s) skipped, not included anywhere below" in html
    assert "20261231T000000Z_partial.json is not valid JSON" in html
    assert "2026-12-31" not in html


def test_merged_nights_keep_machines_apart_in_the_report(capsys, tmp_path):
    docs_a = nights(8, lambda n, t: 1.0, seed=1)
    docs_b = nights(8, lambda n, t: 1.0 if n < 4 else 1.4, seed=2)
    hist = tmp_path / "hist"
    for night, (a, b) in enumerate(zip(docs_a, docs_b, strict=True)):
        b["environment"]["machine_info"]["node"] = "ci-b"
        pa, pb = tmp_path / f"a{night}.json", tmp_path / f"b{night}.json"
        pa.write_text(json.dumps(a))
        pb.write_text(json.dumps(b))
        assert llmperf(capsys, "merge", pa, pb, "-o", hist / f"n{night}.json")[0] == 0
    code, _, _ = llmperf(capsys, "report", hist, "-o", tmp_path / "n.html")
    assert code == 0
    html = (tmp_path / "n.html").read_text()
    steps = rows(html, "step")
    assert steps
    assert all("<td>fake:m@ci-b</td>" in row for row in steps)
    assert step_nights(html) == {4}
    assert "ci-a, ci-b" in html  # the nights table names both machines


def test_names_are_escaped_everywhere(capsys, tmp_path):
    docs = nights(8, lambda n, t: 1.0 if n < 4 else 1.5)
    for doc in docs:
        doc["results"][0]["nodeid"] = "t.py::test_<script>alert(1)</script>[$x$]"
        doc["results"][0]["backend_id"] = "fake:<b>m</b>"
    html = report(capsys, tmp_path, docs)
    assert "<script" not in html
    assert "<b>m</b>" not in html
    assert "test_&lt;script&gt;alert(1)&lt;/script&gt;[$x$]" in html
    assert step_nights(html) == {4}


def test_the_nightly_page_reads_right_in_chromium(capsys, tmp_path):
    chromium = pytest.importorskip("chromium")
    if chromium.chromium_path() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    docs = nights(30, lambda n, t: 1.2 if t == "test_code" and n >= 17 else 1.0, tests=TESTS)
    report(capsys, tmp_path, docs, "--recent", "14")
    page = chromium.open_page(
        tmp_path / "nightly.html",
        tmp_path / "shot.png",
        expressions={
            "charts": "document.querySelectorAll('section.chart svg').length",
            "steps": "[...document.querySelectorAll('tr.step')].map(r => r.dataset.night)",
            "regressions": "document.querySelectorAll('tr.regression').length",
            "scripts": "document.scripts.length",
            "chartWidth": "document.querySelector('section.chart svg').getBoundingClientRect()"
            ".width",
            "overflow": "document.documentElement.scrollWidth > window.innerWidth",
            "label": "[...document.querySelectorAll('svg text')].map(t => t.textContent)"
            ".filter(t => t.includes('10-18')).length",
        },
    )
    assert page.problems == []
    assert page.requests == [(tmp_path / "nightly.html").as_uri()]  # nothing fetched
    assert page.values["charts"] == len(TESTS)
    assert set(page.values["steps"]) == {"17"}
    assert page.values["regressions"] >= 1
    assert page.values["scripts"] == 0
    assert page.values["chartWidth"] > 300
    assert page.values["overflow"] is False
    assert page.values["label"] >= 1
    assert page.screenshot.stat().st_size > 10_000


def test_unchanged_benchmarks_beyond_max_charts_are_listed_not_drawn(capsys, tmp_path):
    tests = ("test_a", "test_b", "test_c", "test_d", "test_e")
    docs = nights(12, lambda n, t: 1.4 if t == "test_e" and n >= 6 else 1.0, tests=tests)
    html = report(capsys, tmp_path, docs, "--max-charts", "2")
    charts = re.findall(r'<section class="chart[^"]*">\s*<h3>([^<]*)<', html)
    assert charts == [
        "tests/test_bench.py::test_e[fake:m] ",
        "tests/test_bench.py::test_a[fake:m] ",
    ]
    assert html.count("<svg") == 2
    assert "3 unchanged benchmark(s) not drawn" in html
    for test in ("test_b", "test_c", "test_d"):
        assert f"tests/test_bench.py::{test}[fake:m] [fake:m]" in html


def test_load_throughput_is_followed_and_a_drop_is_a_regression(capsys, tmp_path):
    docs = nights(12, lambda n, t: 1.0)
    for night, doc in enumerate(docs):
        rps = [(8.0 if night < 6 else 6.0) * (1 + 0.01 * (i % 3)) for i in range(10)]
        doc["results"][0]["samples"]["throughput_rps"] = rps
        doc["results"][0]["stats"]["throughput_rps"] = {"n": 10, "median": sorted(rps)[5]}
    html = report(capsys, tmp_path, docs, "--recent", "12")
    (row,) = [r for r in rows(html, "regression") if "<td>throughput_rps</td>" in r]
    assert "step -25.0% (median 8.08 -&gt; 6.06)" in row
    assert "throughput (req/s)" in html


def test_show_lists_gate_verdicts_quality_and_backend_errors(capsys, tmp_path):
    doc = nights(1, lambda n, t: 1.0, gate=lambda n, t: regression_gate(1.25))[0]
    nodeid = doc["results"][0]["nodeid"]
    doc["quality"] = [
        {
            "nodeid": nodeid,
            "backend": "fake:m",
            "backend_id": "fake:m",
            "score": s,
            "spread": {"sd": None},
        }
        for s in (70.0, 90.0)
    ]
    doc["quality_gate"] = [
        {
            "backend": "fake:m",
            "backend_id": "fake:m",
            "verdict": "REGRESSION",
            "n_pairs": 2,
            "margin": 5.0,
            "alpha": 0.05,
            "mean_diff": -20.0,
            "ci_low": -30.0,
            "ci_high": -10.0,
            "p_noninferior": 0.9,
            "p_regression": 0.01,
            "method": "sign-flip permutation",
        }
    ]
    doc["backend_errors"] = {"fake:broken": "fake model 'broken' is corrupt"}
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc))
    code, out, _ = llmperf(capsys, "show", path, "--width", "120")
    assert code == 0
    assert f"commit {commit_of(0)[:12]}" in out.splitlines()[0]
    assert re.search(r"test_chat\s+fake:m\s+10 .* REGRESSION \+25%", out)
    assert "gate: 1 REGRESSION" in out
    assert f"REGRESSION {nodeid} [fake:m]: TPOT regressed +25.0%" in out
    assert re.search(r"test_chat\s+fake:m\s+2\s+80\.0\s+70\s+90", out)
    assert "REGRESSION fake:m: 2 pairs, mean diff -20.0 points" in out
    assert "quality REGRESSION: the run fails (--llm-fail-on=both)" in out
    assert "backend could not start: fake:broken: fake model 'broken' is corrupt" in out


def test_report_last_n_nights_only(capsys, tmp_path):
    docs = nights(30, lambda n, t: 1.2 if n >= 10 else 1.0)
    html = report(capsys, tmp_path, docs)
    assert step_nights(html) == {10}
    out_path = tmp_path / "last.html"
    code, out, _ = llmperf(capsys, "report", tmp_path / "hist", "-o", out_path, "--last", "15")
    assert code == 0
    assert "(15 night(s)" in out
    html = out_path.read_text()
    assert step_nights(html) == set()  # the step is before the window
    assert "15 night(s), 2026-10-16 to 2026-10-30" in html


# --- malformed documents: refused by show/compare/merge, skipped by report -----------------


def _quality(nodeid: str, backend: str | None, score, call: int = 0) -> dict:
    return {
        "nodeid": nodeid,
        "call": call,
        "backend": backend,
        "backend_id": backend,
        "score": score,
        "spread": {"sd": None, "min": score, "max": score},
        "judge": "openai:judge",
    }


def _quality_gate(backend: str, verdict: str, pairs: list[tuple[str, float, float]]) -> dict:
    diffs = [c - b for _, c, b in pairs]
    mean = sum(diffs) / len(diffs)
    return {
        "backend": backend,
        "backend_id": backend,
        "verdict": verdict,
        "n_pairs": len(pairs),
        "margin": 5.0,
        "alpha": 0.05,
        "mean_diff": mean,
        "ci_low": min(diffs),
        "ci_high": max(diffs),
        "p_noninferior": 0.01 if verdict == "PASS" else 0.9,
        "p_regression": 0.9 if verdict == "PASS" else 0.01,
        "method": "sign-flip permutation",
        "pairs": [{"id": i, "current": c, "baseline": b} for i, c, b in pairs],
    }


def _set(path: tuple, value):
    def change(doc):
        *head, last = path
        target = doc
        for key in head:
            target = target[key]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value

    return change


_DELETE = object()
MALFORMED = {
    "no stats": (_set(("results", 0, "stats"), _DELETE), "results[0] has no 'stats' object"),
    "no backend": (_set(("results", 0, "backend"), _DELETE), "results[0] has no backend string"),
    "median text": (
        _set(("results", 0, "stats", "tpot_s", "median"), "fast"),
        "results[0] has stats.tpot_s.median 'fast', not a number or null",
    ),
    "sample text": (
        _set(("results", 0, "samples", "tpot_s"), ["a", "b"]),
        "results[0] has samples.tpot_s[0] 'a', not a number or null",
    ),
    "runs text": (_set(("results", 0, "runs"), "ten"), "results[0] has runs 'ten', not a whole"),
    "gate text": (
        _set(("results", 0, "gate"), "PASS"),
        "results[0] has gate 'PASS', not an object or null",
    ),
    "gate metric": (
        _set(("results", 0, "gate"), {"verdict": "PASS", "metrics": [{"metric": "tpot_s"}]}),
        "results[0] has gate.metrics[0] without a verdict string",
    ),
    "quality score": (
        _set(("quality",), [_quality("t.py::test_q", "fake:m", "high")]),
        "quality[0] has score 'high', not a number",
    ),
    "quality gate": (
        _set(("quality_gate",), [{"backend": "fake:m", "backend_id": "fake:m", "verdict": "PASS"}]),
        "quality_gate[0] has n_pairs None, not a whole number",
    ),
    "backend key": (
        _set(("backends", 0, "key"), ["strict"]),
        "backends[0] has key ['strict'], not an object or null",
    ),
    # Numbers of the right type that no run can have written.
    "negative sample": (
        _set(("results", 0, "samples", "tpot_s", 3), -0.02),
        "results[0] has samples.tpot_s[3]: -0.02 is out of range (must be >= 0)",
    ),
    "negative stored sample": (
        _set(("results", 0, "gate"), {"verdict": "PASS", "baseline_samples": {"e2e_s": [-1]}}),
        "results[0] has gate.baseline_samples.e2e_s[0]: -1 is out of range (must be >= 0)",
    ),
    "fractional count": (
        _set(("results", 0, "stats", "tpot_s", "n"), 9.5),
        "results[0] has stats.tpot_s.n 9.5, not a whole number or null",
    ),
    "negative ratio": (
        _set(("results", 0, "gate"), regression_gate(-2.0)),
        "results[0] has gate.metrics[0].ratio: -2 is out of range (must be >= 0)",
    ),
    "fractional comparisons": (
        _set(("results", 0, "gate"), {**regression_gate(1.2), "comparisons": 2.5}),
        "results[0] has gate.comparisons 2.5, not a whole number or null",
    ),
    "score above 100": (
        _set(("quality",), [_quality("t.py::test_q", "fake:m", 250.0)]),
        "quality[0] has score: 250 is out of range (must be <= 100)",
    ),
}


@pytest.mark.parametrize("command", ["show", "compare", "merge"])
@pytest.mark.parametrize("variant", sorted(MALFORMED))
def test_malformed_entries_are_refused_with_file_and_reason(capsys, tmp_path, command, variant):
    change, message = MALFORMED[variant]
    doc = nights(1, lambda n, t: 1.0)[0]
    good = tmp_path / "good.json"
    good.write_text(json.dumps(doc))
    bad = edited(good, tmp_path / "bad.json", change)
    if command == "merge":  # another machine, so only the malformed entry can be refused
        on_machine("ci-b")(doc)
        good.write_text(json.dumps(doc))
    args = {
        "show": ["show", bad],
        "compare": ["compare", good, bad],
        "merge": ["merge", good, bad, "-o", tmp_path / "out.json"],
    }[command]
    code, out, err = llmperf(capsys, *args)
    assert (code, out) == (2, "")
    assert err.startswith(f"llmperf: error: {bad}: {message}"), err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out.json").exists()


def test_report_skips_malformed_files_and_names_them(capsys, tmp_path):
    hist = tmp_path / "hist"
    docs = nights(6, lambda n, t: 1.0)
    for doc in docs:
        append_run(hist, doc)
    broken = {
        "strings.json": MALFORMED["sample text"],
        "nostats.json": MALFORMED["no stats"],
        "quality.json": MALFORMED["quality score"],
    }
    for name, (change, _) in broken.items():
        doc = json.loads(json.dumps(docs[0]))
        change(doc)
        (hist / name).write_text(json.dumps(doc))
    code, out, err = llmperf(capsys, "report", hist, "-o", tmp_path / "n.html")
    assert code == 0, err
    assert "(6 night(s)" in out
    warnings = err.splitlines()
    assert len(warnings) == 3
    html = (tmp_path / "n.html").read_text()
    assert "3 file(s) skipped, not included anywhere below" in html
    for name, (_, message) in broken.items():
        line = next(w for w in warnings if name in w)
        assert line.startswith("llmperf: warning: skipped ")
        assert line.endswith(f"{name}: {message}")
        assert f"{name}: {message}".replace("'", "&#39;") in html


@pytest.mark.parametrize(
    ("command", "target", "error"),
    [
        ("show", "pytest_llmperf._show.show_lines", KeyError("stats")),
        ("compare", "pytest_llmperf.cli.compare_documents", TypeError("bad operand")),
        ("merge", "pytest_llmperf.cli.merge_documents", ValueError("bad value")),
        ("report", "pytest_llmperf.report_nightly.render_nightly", AttributeError("no .get")),
        ("compare", "pytest_llmperf.cli.compare_documents", ZeroDivisionError("division")),
        ("show", "pytest_llmperf._show.show_lines", OverflowError("int too large")),
        ("report", "pytest_llmperf.report_nightly.render_nightly", RecursionError("too deep")),
    ],
)
def test_a_shape_the_checks_miss_is_still_one_line(
    capsys, tmp_path, monkeypatch, command, target, error
):
    """The backstop: whatever a reader trips over in an input is one line and exit 2."""

    def trip(*args, **kwargs):
        raise error

    monkeypatch.setattr(target, trip)
    doc = nights(1, lambda n, t: 1.0)[0]
    good = tmp_path / "good.json"
    good.write_text(json.dumps(doc))
    other = edited(good, tmp_path / "other.json", on_machine("ci-b"))
    append_run(tmp_path / "hist", doc)
    args = {
        "show": ["show", good],
        "compare": ["compare", good, other],
        "merge": ["merge", good, other, "-o", tmp_path / "out.json"],
        "report": ["report", tmp_path / "hist", "-o", tmp_path / "n.html"],
    }[command]
    inputs = {
        "show": f"{good}",
        "compare": f"{good}, {other}",
        "merge": f"{good}, {other}",
        "report": f"{tmp_path / 'hist'}",
    }[command]
    code, out, err = llmperf(capsys, *args)
    assert (code, out) == (2, "")
    assert err == (
        f"llmperf: error: {inputs}: content this version cannot read "
        f"({type(error).__name__}: {error}); is it a pytest-llmperf results file?\n"
    )


def test_documents_built_in_memory_with_nan_or_huge_numbers_are_refused_by_merge():
    """A strict reader stops NaN and 10**400 in files; the checks stop them in documents that
    never were a file, before the merged one holds them (its writer would refuse it)."""
    from pytest_llmperf.errors import ResultsFileError
    from pytest_llmperf.merge import merge_documents

    good = nights(1, lambda n, t: 1.0)[0]
    for where, value, message in [
        (("samples", "tpot_s", 0), float("nan"), "samples.tpot_s[0]: nan is not a finite number"),
        (("stats", "e2e_s", "median"), float("inf"), "stats.e2e_s.median: inf is not a finite"),
        (("stats", "ttft_s", "max"), 10**400, "stats.ttft_s.max: a 401-digit number is too large"),
        (("runs",), 10**400, "runs 1000000000"),
    ]:
        bad = copy.deepcopy(good)
        on_machine("ci-b")(bad)
        _set(("results", 0, *where), value)(bad)
        with pytest.raises(ResultsFileError) as info:
            merge_documents([("good.json", good), ("bad.json", bad)])
        assert str(info.value).startswith(f"bad.json: results[0] has {message}")


def test_show_prints_a_files_control_characters_escaped(capsys, tmp_path):
    doc = nights(1, lambda n, t: 1.0)[0]
    doc["results"][0]["backend_id"] = "\x1b]0;owned\x07\x1b[2Jfake"
    doc["backend_errors"] = {"fake:x": "line one\rline two"}
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc))
    code, out, _ = llmperf(capsys, "show", path, "--width", "200")
    assert code == 0
    assert "\x1b" not in out
    assert "\r" not in out
    assert "\\x1b]0;owned\\x07\\x1b[2Jfake" in out
    assert "line one\\x0dline two" in out


def test_an_error_naming_a_file_with_a_newline_is_still_one_line(capsys, tmp_path):
    path = tmp_path / "a\nb.json"
    code, out, err = llmperf(capsys, "show", path)
    assert (code, out) == (2, "")
    assert err == f"llmperf: error: {tmp_path}/a\\nb.json: no such file\n"


# --- degenerate but valid data: a defined verdict, never a crash ---------------------------


def _rising(doc: dict, scale: float = 1.0) -> dict:
    """Samples that drift upward within the run (a warming machine), times ``scale``."""
    for values in doc["results"][0]["samples"].values():
        values[:] = sorted(v * scale for v in values)
    return doc


def test_compare_against_an_all_zero_baseline_is_refused_with_the_reason(capsys, tmp_path):
    zeros, current = tmp_path / "zeros.json", tmp_path / "current.json"
    zeros.write_text(json.dumps(_rising(nights(1, lambda n, t: 1.0)[0], 0.0)))
    current.write_text(json.dumps(_rising(nights(1, lambda n, t: 1.0, seed=3)[0])))
    code, out, _ = llmperf(capsys, "compare", zeros, current, "--metric", "tpot_s")
    assert code == 0
    assert re.search(r"tpot_s\s+0 ms\s+[\d.]+ ms\s+-\s+-\s+-\s+-\s+REFUSED", out)
    assert "REFUSED tests/test_bench.py::test_chat[fake:m] [fake:m] tpot_s: baseline has no " in out
    assert "nan" not in out
    assert out.rstrip().endswith("llmperf compare: 1 REFUSED")


def test_compare_of_the_largest_floats_shows_finite_medians(capsys, tmp_path):
    huge, current = tmp_path / "huge.json", tmp_path / "current.json"
    doc = nights(1, lambda n, t: 1.0)[0]
    for values in doc["results"][0]["samples"].values():
        values[:] = [1.7e308] * len(values)
    huge.write_text(json.dumps(doc))
    current.write_text(json.dumps(nights(1, lambda n, t: 1.0, seed=3)[0]))
    code, out, _ = llmperf(capsys, "compare", huge, current, "--metric", "tpot_s")
    assert code in (0, 1)
    assert re.search(r"tpot_s\s+1\.7e\+308 s", out)  # the median, not (a + b) / 2 = inf
    assert "inf ms" not in out


# --- merge: machines stay apart by backend id and by spec ----------------------------------

JUDGED_ONLY = "tests/test_quality.py::test_answers[fake:m]"


def judged_machine(node: str, level: float, score: float, verdict: str, seed: int) -> dict:
    """A run on ``node``: test_chat benchmarked and judged, test_answers only judged, and the
    quality gate's verdict for fake:m."""
    doc = nights(1, lambda n, t: level, seed=seed)[0]
    on_machine(node)(doc)
    chat = doc["results"][0]["nodeid"]
    doc["quality"] = [
        _quality(chat, "fake:m", score),
        _quality(JUDGED_ONLY, "fake:m", score),
        _quality(JUDGED_ONLY, "fake:m", score, call=1),
    ]
    pairs = [(f"{q['nodeid']}#{q['call']}", score, 80.0) for q in doc["quality"]]
    doc["quality_gate"] = [_quality_gate("fake:m", verdict, pairs)]
    return doc


def test_merge_keeps_machines_apart_by_spec_too(capsys, tmp_path):
    from pytest_llmperf._report_data import backend_points
    from pytest_llmperf._report_data import rows as report_rows

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(judged_machine("ci-a", 1.0, 90.0, "PASS", seed=1)))
    b.write_text(json.dumps(judged_machine("ci-b", 3.0, 40.0, "REGRESSION", seed=2)))
    merged_path = tmp_path / "m.json"
    assert llmperf(capsys, "merge", a, b, "-o", merged_path)[0] == 0
    merged = read_document(merged_path)
    for key in ("results", "quality", "quality_gate"):
        pairs = {(e["backend"], e["backend_id"], e["source"]) for e in merged[key]}
        assert pairs == {("fake:m@ci-a", "fake:m@ci-a", 0), ("fake:m@ci-b", "fake:m@ci-b", 1)}
    assert [(r["spec"], r["id"]) for r in merged["backends"]] == [
        ("fake:m@ci-a", "fake:m@ci-a"),
        ("fake:m@ci-b", "fake:m@ci-b"),
    ]
    spt = {r["backend_id"]: r["stats"]["sec_per_token"]["median"] for r in merged["results"]}
    # show: one quality row per machine, each with its own machine's seconds per token.
    code, out, _ = llmperf(capsys, "show", merged_path, "--width", "140")
    assert code == 0
    for machine, score in (("ci-a", "90.0"), ("ci-b", "40.0")):
        backend = f"fake:m@{machine}"
        chat = re.search(rf"test_chat\[fake:m\]\s+{backend}\s+1\s+{score}\s+\S+\s+\S+\s+(\S+)", out)
        assert chat, out
        assert float(chat.group(1)) == pytest.approx(spt[backend], abs=1e-4)
        assert re.search(rf"test_answers\[fake:m\]\s+{backend}\s+2\s+{score}\s", out), out
    assert "PASS fake:m@ci-a: 3 pairs" in out
    assert "REGRESSION fake:m@ci-b: 3 pairs" in out
    # HTML: the judged-only test is a row per machine with that machine's quality verdict;
    # the trade-off chart has a point per machine.
    judged = {
        (row.backend_id, row.cells[4].text, row.cells[4].verdict)
        for row in report_rows(merged)
        if row.nodeid == JUDGED_ONLY
    }
    assert judged == {("fake:m@ci-a", "90.0", "PASS"), ("fake:m@ci-b", "40.0", "REGRESSION")}
    points = {(p.backend_id, p.quality, p.n_quality) for p in backend_points(merged)}
    assert points == {("fake:m@ci-a", 90.0, 3), ("fake:m@ci-b", 40.0, 3)}
    html = render_html(merged)
    assert "quality of fake:m@ci-b" in html


def test_merge_separates_or_refuses_judged_tests_without_benchmarks(capsys, tmp_path):
    def judged_only(node, score, verdict, seed):
        doc = judged_machine(node, 1.0, score, verdict, seed)
        doc["results"] = []
        doc["quality"] = doc["quality"][1:]
        return doc

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(judged_only("ci-a", 90.0, "PASS", 1)))
    b.write_text(json.dumps(judged_only("ci-b", 40.0, "REGRESSION", 2)))
    merged_path = tmp_path / "m.json"
    assert llmperf(capsys, "merge", a, b, "-o", merged_path)[0] == 0
    merged = read_document(merged_path)
    assert {(q["backend"], q["score"]) for q in merged["quality"]} == {
        ("fake:m@ci-a", 90.0),
        ("fake:m@ci-b", 40.0),
    }
    assert [g["backend"] for g in merged["quality_gate"]] == ["fake:m@ci-a", "fake:m@ci-b"]
    # From one machine the same verdicts twice cannot be told apart.
    same = edited(b, tmp_path / "same.json", on_machine("ci-a"))
    code, _, err = llmperf(capsys, "merge", a, same, "-o", tmp_path / "refused.json")
    assert code == 2
    assert err.startswith(f"llmperf: error: cannot merge: {JUDGED_ONLY} (llm_judge call 0)")
    assert "which ran on the same machine (ci-a)" in err

    # Only the quality gate in common: still the same backend twice.
    def gate_only(doc):
        doc["quality"] = []

    only_a = edited(a, tmp_path / "ga.json", gate_only)
    only_b = edited(same, tmp_path / "gb.json", gate_only)
    code, _, err = llmperf(capsys, "merge", only_a, only_b, "-o", tmp_path / "refused.json")
    assert code == 2
    assert err.startswith("llmperf: error: cannot merge: the quality gate [fake:m] is in both")
    assert not (tmp_path / "refused.json").exists()


# --- compare: a load test's p95 TTFT ----------------------------------------------------------

LOAD = """
import json

FAST = json.dumps({{"ttft": 0.02, "tokens": 4}}, sort_keys=True)
SLOW = json.dumps({{"ttft": 1.0, "tokens": 4}}, sort_keys=True)

def test_serving(llm_load):
    llm_load([SLOW] * {slow} + [FAST] * {fast}, concurrency=10, requests=100, warmup=0)
"""


@pytest.fixture
def load_runs(pytester) -> tuple[Path, Path]:
    """a.json and b.json from two real llm_load runs of 100 requests on a loopback server: the
    same median TTFT, but 15% of B's requests take 1 s (its p95): far beyond any stall of a
    busy machine, which could otherwise put some of A's requests in the tail too."""
    from load_server import serve

    with serve() as server:
        for name, slow in (("a", 0), ("b", 15)):
            pytester.makepyfile(test_serving=LOAD.format(slow=slow, fast=100 - slow))
            result = pytester.runpytest(f"--llm=openai:m@{server.url}", f"--llm-json={name}.json")
            result.assert_outcomes(passed=1)
    return pytester.path / "a.json", pytester.path / "b.json"


def test_compare_judges_the_p95_ttft_of_load_results_with_the_tail_test(load_runs, capsys):
    from pytest_llmperf._compare_files import compare_documents
    from pytest_llmperf.load_metrics import tail_pvalues

    a, b = load_runs
    code, out, _ = llmperf(
        capsys, "compare", a, b, "--metric", "ttft_p95_s", "--metric", "ttft_s", "--width", "160"
    )
    assert code == 1
    assert "too few" not in out
    assert re.search(r"ttft_p95_s .* REGRESSION", out), out
    assert (
        "REGRESSION test_serving.py::test_serving[openai:m]::load[c=10] [openai:m] ttft_p95_s:"
        in out
    )
    assert re.search(r"ttft_s\s+\d", out)  # the median test, beside it
    # The p-value is the load gate's: Mood's quantile test on the ttft_s samples.
    doc_a, doc_b = read_document(a), read_document(b)
    (row,) = compare_documents(doc_a, doc_b, alpha=0.05, metrics=["ttft_p95_s"]).rows
    assert row.verdict is not None
    base, cur = doc_a["results"][0]["samples"]["ttft_s"], doc_b["results"][0]["samples"]["ttft_s"]
    assert row.verdict.p_slowdown == tail_pvalues(cur, base, 0.30)[0]
    # The values compared are the p95s (B's median TTFT is about 0.03 s).
    assert row.current_median > 0.9 and row.baseline_median < 0.5


def test_compare_reports_an_undecidable_p95_and_follows_the_gate(load_runs, capsys, tmp_path):
    def few(doc):
        doc["results"][0]["samples"]["ttft_s"] = doc["results"][0]["samples"]["ttft_s"][:20]

    a_few = edited(load_runs[0], tmp_path / "a.json", few)
    b_few = edited(load_runs[1], tmp_path / "b.json", few)
    code, out, _ = llmperf(capsys, "compare", a_few, b_few, "--metric", "ttft_p95_s")
    assert code == 0
    assert "ttft_p95_s: not decidable: 20 vs 20 requests cannot show a p95 change" in out
    assert out.rstrip().endswith("llmperf compare: 1 NOT COMPARED")

    def gated(doc):  # as the load gate writes it when it compared the p95
        metric = {"metric": "ttft_p95_s", "verdict": "PASS", "ratio": 1.0}
        doc["results"][0]["gate"] = {"verdict": "PASS", "metrics": [metric]}

    b_gated = edited(load_runs[1], tmp_path / "gated.json", gated)
    code, out, _ = llmperf(capsys, "compare", load_runs[0], b_gated)
    assert code == 1
    assert out.rstrip().endswith("llmperf compare: 1 REGRESSION")
    assert "ttft_p95_s:" in out
