"""Interrupted sessions and killed writers.

Ctrl-C (a KeyboardInterrupt, exit status 2) saves no baseline, and every file written is marked
``"interrupted": true``, so a partial run never passes for a whole one. A writer killed mid-write
(SIGKILL) leaves a hidden temporary file; the next write into that directory removes it once it
is old enough to be nobody's write in flight.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pytest_llmperf.history import append_run, load_history
from pytest_llmperf.results import STALE_TEMP_S, write_text_atomic

TWO_BENCHMARKS = """
import os
import pytest

@pytest.mark.llm_perf(max_tokens=2, warmup=0, runs=3)
def test_a(llm_bench):
    llm_bench("first")

@pytest.mark.llm_perf(max_tokens=2, warmup=0, runs=3)
def test_b(llm_bench):
    backend = llm_bench.handle.backend
    real, calls = backend.stream, []

    def stream(request):
        calls.append(request)
        if len(calls) == 2 and os.environ.get("INTERRUPT"):
            raise KeyboardInterrupt  # Ctrl-C during the second benchmark's second run
        return real(request)

    backend.stream = stream
    llm_bench("second")
"""

OUTPUTS = (
    "--llm-json=out.json",
    "--llm-benchmark-json=bench.json",
    "--llm-markdown=out.md",
    "--llm-html=out.html",
    "--llm-history=history",
)


def test_an_interrupted_run_saves_no_baseline_and_marks_what_it_writes(fake, monkeypatch):
    fake.makepyfile(test_x=TWO_BENCHMARKS)
    monkeypatch.setenv("FAKE_DELAY_MS", "0")
    complete = fake.runpytest("--llm=fake:m", "--llm-save-baseline", *OUTPUTS)
    complete.assert_outcomes(passed=2)
    [baseline] = (fake.path / "baselines").glob("*.json")
    saved = baseline.read_bytes()
    assert "interrupted" not in json.loads((fake.path / "out.json").read_text())

    monkeypatch.setenv("INTERRUPT", "1")
    # no_reraise_ctrlc: the interrupt ends the inner session, not this test.
    result = fake.runpytest("--llm=fake:m", "--llm-save-baseline", *OUTPUTS, no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert baseline.read_bytes() == saved  # the partial run did not become the baseline
    assert sorted(p.name for p in baseline.parent.iterdir()) == [baseline.name]
    out = result.stdout.str()
    assert "llmperf: interrupted: no baseline saved" in out
    assert "saved 1 benchmark(s)" not in out
    assert 'partial run, marked "interrupted": true' in out

    doc = json.loads((fake.path / "out.json").read_text())
    assert doc["interrupted"] is True
    assert [r["nodeid"].split("::")[1] for r in doc["results"]] == ["test_a[fake:m]"]
    assert json.loads((fake.path / "bench.json").read_text())["interrupted"] is True
    assert "**interrupted**: partial results" in (fake.path / "out.md").read_text()
    assert 'id="interrupted">Interrupted run' in (fake.path / "out.html").read_text()
    history = load_history(fake.path / "history")
    assert history.problems == []
    assert [run.document.get("interrupted", False) for run in history.runs] == [False, True]


def test_an_interrupted_run_keeps_exit_status_2_whatever_fails_after(fake, monkeypatch):
    # Writing a file fails after the interrupt (a file where its directory should be): that is
    # one red line, and the status still says "interrupted", not "internal error".
    fake.makepyfile(test_x=TWO_BENCHMARKS)
    monkeypatch.setenv("FAKE_DELAY_MS", "0")
    monkeypatch.setenv("INTERRUPT", "1")
    (fake.path / "file").write_text("not a directory")
    args = ("--llm=fake:m", "--llm-json=out.json", "--llm-markdown=file/x.md")
    result = fake.runpytest(*args, no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["llmperf: could not write *file/x.md*"])
    assert json.loads((fake.path / "out.json").read_text())["interrupted"] is True


def make_old(path, seconds=STALE_TEMP_S + 60):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_stale_temporary_files_of_a_file_are_removed_at_its_next_write(tmp_path):
    target = tmp_path / "out.json"
    stale = tmp_path / ".out.json.abcd1234.tmp"
    in_flight = tmp_path / ".out.json.efgh5678.tmp"  # another writer's, still being written
    other = tmp_path / ".other.json.abcd1234.tmp"  # another file's: not this write's business
    not_ours = tmp_path / ".out.json.notours.tmp"  # not a name mkstemp makes
    for path in (stale, in_flight, other, not_ours):
        path.write_text("partial")
    for path in (stale, other, not_ours):
        make_old(path)
    write_text_atomic(target, "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (target, in_flight, other, not_ours)
    )


# Adds a run to a history, but is stopped (then killed) before its file gets its final name.
KILLED_APPEND = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import pytest_llmperf.history as history

    def stall(tmp, path):
        Path(sys.argv[3]).touch()
        time.sleep(600)

    history._publish = stall
    history.append_run(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()))
    """
)


def test_a_killed_history_write_leaves_a_temporary_file_that_a_later_write_removes(tmp_path):
    doc = {
        "schema_version": 1,
        "created": "2026-11-01T00:00:00+00:00",
        "results": [],
        "environment": {},
    }
    doc_path, stalled, hist = tmp_path / "doc.json", tmp_path / "stalled", tmp_path / "h"
    doc_path.write_text(json.dumps(doc))
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_APPEND, str(hist), str(doc_path), str(stalled)]
    )
    deadline = time.monotonic() + 120
    while not stalled.exists():
        assert writer.poll() is None and time.monotonic() < deadline, "the writer never wrote"
        time.sleep(0.01)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=60)
    [left] = [p for p in hist.iterdir() if p.name.startswith(".")]
    assert left.name.startswith(".llmperf-") and left.name.endswith(".tmp")

    # Fresh, it could be a concurrent run's write in flight (a history has no lock): kept.
    first = append_run(hist, doc)
    assert left.exists()
    make_old(left)
    second = append_run(hist, doc)
    assert sorted(hist.iterdir()) == sorted([first, second])
    assert len(load_history(hist).runs) == 2
