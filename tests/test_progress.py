"""--llm-progress: which benchmark and sample is running, without changing the output that stays.

Runs under pytester are not on a terminal; the terminal cases run pytest in a pseudo-terminal
and replay its output through a small screen model (the few control sequences pytest and the
status line use), so "the screen ends up as without progress" is checked, not assumed.
"""

import json
import os
import re
import select
import subprocess
import sys
import time

import pytest

BENCH = """
import pytest

@pytest.mark.llm_perf(max_tokens=4, warmup=2, runs=5)
def test_a(llm_bench):
    llm_bench("hello there")

@pytest.mark.llm_perf(max_tokens=4, warmup=0, runs=3)
def test_b(llm_bench):
    llm_bench("hello there")
    llm_bench("general kenobi", name="second")
"""


@pytest.fixture
def bench(fake, monkeypatch):
    fake.makepyfile(test_p=BENCH)
    monkeypatch.setenv("FAKE_DELAY_MS", "1")
    for name in ("CI", "BUILD_NUMBER"):
        monkeypatch.delenv(name, raising=False)
    return fake


def progress_lines(text):
    return [line for line in text.splitlines() if re.match(r"llmperf: test_\w+\[", line)]


def test_on_without_a_terminal_prints_one_plain_line_per_batch(bench):
    result = bench.runpytest("--llm=fake:m", "--llm-progress=on")
    result.assert_outcomes(passed=2)
    assert progress_lines(result.stdout.str()) == [
        "llmperf: test_a[fake:m] warm-up, 2 run(s)",
        "llmperf: test_a[fake:m] samples 1-5",
        "llmperf: test_b[fake:m] samples 1-3",
        # a second benchmark in the same test gets its own line, though shaped like the first
        "llmperf: test_b[fake:m]:second samples 1-3",
    ]
    assert "\r" not in result.stdout.str()
    assert "\x1b[" not in result.stdout.str()


def test_on_wins_over_quiet(bench):
    result = bench.runpytest("--llm=fake:m", "--llm-progress=on", "-q")
    result.assert_outcomes(passed=2)
    assert len(progress_lines(result.stdout.str())) == 4


def test_ini_turns_it_on(bench):
    bench.makeini("[pytest]\nllm_progress = on\n")
    result = bench.runpytest("--llm=fake:m")
    assert len(progress_lines(result.stdout.str())) == 4


def test_later_looks_and_a_confirmation_rerun_are_batches_of_their_own(fake, monkeypatch):
    fake.makepyfile(
        """
        import pytest

        @pytest.mark.llm_perf(max_tokens=4, warmup=0)
        def test_a(llm_bench):
            llm_bench("hello there")
        """
    )
    # A 4x slower candidate in relative mode: a regression, re-run to confirm it.
    result = fake.runpytest(
        "--llm=fake:cand?delay_ms=8", "--llm-compare-to=fake:ref?delay_ms=2", "--llm-progress=on"
    )
    result.assert_outcomes(failed=1)
    lines = progress_lines(result.stdout.str())
    label = "llmperf: test_a[fake:cand?delay_ms=8]"
    assert lines[0] == f"{label} samples 1-10 (up to 40)"
    assert f"{label} confirmation samples 1-10 (up to 40)" in lines
    assert all(line.startswith(label) for line in lines)


def normalised(text):
    """Output with what differs between two runs anyway (timings, widths) evened out."""
    out = []
    for line in text.splitlines():
        line = re.sub(r"[=\-]{3,}", "==", line)
        line = re.sub(r"\d+(\.\d+)?", "N", line)
        out.append(re.sub(r"\s+", " ", line).strip())
    return out


def test_auto_stays_silent_without_a_terminal_and_changes_nothing(bench):
    auto = bench.runpytest("--llm=fake:m")
    auto.assert_outcomes(passed=2)
    off = bench.runpytest("--llm=fake:m", "--llm-progress=off")
    assert progress_lines(auto.stdout.str()) == []
    assert normalised(auto.stdout.str()) == normalised(off.stdout.str())
    assert "llmperf: latency (medians over timed runs)" in auto.stdout.str()


def test_xdist_workers_show_nothing_and_results_still_arrive(bench):
    result = bench.runpytest_subprocess(
        "-p", "xdist", "-n", "2", "--llm=fake:m", "--llm-progress=on", "--llm-json=out.json"
    )
    result.assert_outcomes(passed=2)
    assert progress_lines(result.stdout.str()) == []
    results = json.loads((bench.path / "out.json").read_text())["results"]
    assert sorted(r["name"] for r in results) == ["", "", "second"]


# --- on a terminal -------------------------------------------------------------------------

_CSI = re.compile(r"\x1b\[([0-9;]*)([A-Za-z])")


def screen(raw):
    """What a terminal shows after ``raw``: handles \\r, \\n, colours, CSI K and CSI D."""
    lines = [[]]
    col = 0
    i = 0
    while i < len(raw):
        match = _CSI.match(raw, i)
        if match:
            arg, op = match.groups()
            line = lines[-1]
            if op == "K":
                del line[col:]
            elif op == "D":
                col = max(0, col - int(arg or 1))
            elif op != "m":
                raise AssertionError(f"unexpected control sequence {match.group()!r}")
            i = match.end()
            continue
        ch = raw[i]
        if ch == "\n":
            lines.append([])
            col = 0
        elif ch == "\r":
            col = 0
        else:
            line = lines[-1]
            line.extend(" " * (col - len(line)))
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
        i += 1
    return "\n".join("".join(line).rstrip() for line in lines)


def run_on_a_terminal(pytester, *args, **env):
    """pytest in a pseudo-terminal: its raw output (bounded in time)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", "BUILD_NUMBER")}
    environ.update({"COLUMNS": "100", **env})
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--llm=fake:m", *args],
        cwd=pytester.path,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # Linux: EIO once the child has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


needs_pty = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


@needs_pty
@pytest.mark.parametrize("verbosity", [[], ["-v"]], ids=["default", "verbose"])
def test_on_a_terminal_the_status_is_updated_in_place_then_erased(bench, verbosity):
    raw = run_on_a_terminal(bench, *verbosity, FAKE_DELAY_MS="1")
    assert "llmperf: test_a[fake:m] warm-up 2/2\x1b[" in raw
    assert "llmperf: test_a[fake:m] sample 5/5\x1b[" in raw
    assert "llmperf: test_b[fake:m]:second sample 3/3\x1b[" in raw
    off = run_on_a_terminal(bench, *verbosity, "--llm-progress=off", FAKE_DELAY_MS="1")
    assert "llmperf: test_a" not in off
    shown = screen(raw)
    assert not re.search(r"sample \d+/", shown)
    assert "passed" in shown
    assert normalised(shown) == normalised(screen(off))


@needs_pty
def test_on_a_narrow_terminal_the_sample_count_is_what_stays(bench):
    # "test_p.py::test_a[fake:m] " leaves 22 columns: too few for the test's name.
    raw = run_on_a_terminal(bench, "-v", FAKE_DELAY_MS="1", COLUMNS="50")
    assert " sample 5/5\x1b[" in raw
    assert "llmperf: test_a" not in raw
    shown = screen(raw)
    assert not re.search(r"sample \d+/", shown)


@needs_pty
@pytest.mark.parametrize(
    ("args", "env"),
    [(["-q"], {}), ([], {"CI": "true"}), ([], {"BUILD_NUMBER": "7"}), (["--llm-progress=off"], {})],
    ids=["quiet", "CI", "BUILD_NUMBER", "off"],
)
def test_auto_on_a_terminal_is_silent_under_q_and_in_ci(bench, args, env):
    raw = run_on_a_terminal(bench, *args, FAKE_DELAY_MS="1", **env)
    assert "passed" in raw
    assert "llmperf: test_a" not in raw


@needs_pty
def test_on_wins_over_quiet_on_a_terminal(bench):
    raw = run_on_a_terminal(bench, "-q", "--llm-progress=on", FAKE_DELAY_MS="1")
    assert "llmperf: test_a[fake:m] sample 5/5\x1b[" in raw
    assert not re.search(r"sample \d+/", screen(raw))
