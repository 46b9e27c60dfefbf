"""Saves that cannot lose a run: separate processes saving one baseline at once each keep their
run, a held lock is waited for (and a hung holder gives one line, not a lost file), and what a
killed saver leaves behind is cleaned at the next save.

Overlap is made certain, not left to timing: every process has read the baseline before any of
them saves (they meet at a barrier of files in between).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_llmperf import baseline as baseline_module
from pytest_llmperf.baseline import load_baseline, save_baseline
from pytest_llmperf.errors import BaselineError

FAKE_BACKEND = Path(__file__).with_name("fake_backend.py").read_text()
NODE = "tests/x.py::test_a[fake:m]"
KEY = {"strict": {"cpu_model": "x"}, "soft": {"host": "h"}}
PARAMS = {"prompt": "hi", "max_tokens": 2, "temperature": 0.0, "seed": None, "options": {}}
#: The scripts below run in their own processes: they get the constants as source.
PRELUDE = f"NODE, PARAMS, KEY = {NODE!r}, {PARAMS!r}, {KEY!r}\n"

# Reads the baseline, waits until every other process has read it too, then saves one run
# whose only sample is this process's number.
SAVER = PRELUDE + textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pytest_llmperf.baseline import load_baseline, save_baseline

    path, barrier, me, count = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    existing = load_baseline(path)
    (barrier / me).touch()
    deadline = time.monotonic() + 120
    while len(list(barrier.iterdir())) < count:
        if time.monotonic() > deadline:
            sys.exit("barrier: the other savers never came")
        time.sleep(0.01)
    result = {"nodeid": NODE, "name": "", "params": PARAMS, "samples": {"tpot_s": [float(me)]}}
    save_baseline(existing, path, backend="fake:m", key=KEY, results=[result], commit=None,
                  keep=10)
    """
)


def result(value):
    return {"nodeid": NODE, "name": "", "params": PARAMS, "samples": {"tpot_s": [value]}}


def save(path, value, existing=None):
    return save_baseline(
        existing, path, backend="fake:m", key=KEY, results=[result(value)], commit=None, keep=10
    )


def stored_values(path):
    return sorted(run["samples"]["tpot_s"][0] for run in load_baseline(path).benchmarks[NODE].runs)


@pytest.mark.parametrize("first", [False, True], ids=["new file", "existing file"])
def test_processes_saving_one_baseline_at_once_keep_every_run(tmp_path, first):
    path = tmp_path / "baselines" / "fake-m.json"
    if first:
        save(path, 100.0)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    savers = [
        subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path), str(barrier), str(k), "3"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(3)
    ]
    for saver in savers:
        _, err = saver.communicate(timeout=180)
        assert saver.returncode == 0, err
    assert stored_values(path) == [0.0, 1.0, 2.0] + ([100.0] if first else [])
    # Neither the lock nor a temporary file is left for `git add baselines/` to pick up.
    assert os.listdir(path.parent) == [path.name]


RACING_CONFTEST = (
    FAKE_BACKEND
    + """
import os, pathlib, time
import pytest

@pytest.hookimpl(tryfirst=True)  # before pytest-llmperf's own sessionfinish saves
def pytest_sessionfinish(session):
    barrier = pathlib.Path(os.environ["BARRIER"])
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(barrier.iterdir())) < 2:
        assert time.monotonic() < deadline, "the other run never came"
        time.sleep(0.02)
"""
)


def test_two_overlapping_save_baseline_runs_keep_both_runs(pytester, tmp_path):
    # The report: both said "saved 1 benchmark(s)", the file held one run.
    pytester.makeconftest(RACING_CONFTEST)
    pytester.makepyfile(test_x="def test_a(llm_bench):\n    llm_bench('hi', max_tokens=2)\n")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "BARRIER": str(barrier), "FAKE_DELAY_MS": "0"}
    args = ["--llm=fake:m", "--llm-save-baseline", "--llm-runs=2", "--llm-warmup=0"]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    runs = [
        subprocess.Popen(command, cwd=pytester.path, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert all("llmperf: saved 1 benchmark(s) of fake:m" in out for out in outputs)
    # The one that saved second says it merged with the other's save.
    assert sum("another run saved to it while this one ran" in out for out in outputs) == 1
    [path] = (pytester.path / "baselines").glob("*.json")
    [entry] = load_baseline(path).benchmarks.values()
    assert len(entry.runs) == 2
    assert os.listdir(path.parent) == [path.name]


# Takes the baseline's lock (as a save does), says so, and holds it until killed.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pytest_llmperf._file_lock import exclusive

    with exclusive(Path(sys.argv[1]), timeout=10):
        Path(sys.argv[2]).touch()
        time.sleep(600)
    """
)


def hold_lock(path, tmp_path):
    held = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(held)])
    deadline = time.monotonic() + 120
    while not held.exists():
        assert holder.poll() is None and time.monotonic() < deadline, "the holder never locked"
        time.sleep(0.01)
    return holder


def test_a_save_never_writes_while_another_process_holds_the_lock(tmp_path, monkeypatch):
    path = tmp_path / "fake-m.json"
    save(path, 1.0)
    before = path.read_bytes()
    monkeypatch.setattr(baseline_module, "LOCK_TIMEOUT_S", 0.5, raising=False)
    holder = hold_lock(path, tmp_path)
    try:
        with pytest.raises(BaselineError) as info:
            save(path, 2.0, existing=load_baseline(path))
    finally:
        holder.kill()
        holder.wait(timeout=60)
    message = str(info.value)
    assert str(path) in message and "locked by another process" in message
    assert "nothing was written" in message and "\n" not in message
    assert path.read_bytes() == before


# Saves, but is stopped (and then killed) between writing the temporary file and renaming it.
KILLED_SAVER = PRELUDE + textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import pytest_llmperf.results as results
    from pytest_llmperf.baseline import load_baseline, save_baseline

    def stall(*args):
        Path(sys.argv[2]).touch()
        time.sleep(600)

    results.os.replace = stall
    path = Path(sys.argv[1])
    result = {"nodeid": NODE, "name": "", "params": PARAMS, "samples": {"tpot_s": [9.0]}}
    save_baseline(load_baseline(path), path, backend="fake:m", key=KEY, results=[result],
                  commit=None, keep=10)
    """
)


def test_what_a_killed_save_leaves_is_cleaned_by_the_next_save(tmp_path):
    path = tmp_path / "fake-m.json"
    save(path, 1.0)
    stalled = tmp_path / "stalled"
    saver = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(path), str(stalled)])
    deadline = time.monotonic() + 120
    while not stalled.exists():
        assert saver.poll() is None and time.monotonic() < deadline, "the saver never wrote"
        time.sleep(0.01)
    saver.send_signal(signal.SIGKILL)
    saver.wait(timeout=60)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert any(name.startswith(".fake-m.json.") and name.endswith(".tmp") for name in left)
    assert json.loads(path.read_text())  # the baseline itself is whole: the rename never came

    save(path, 2.0, existing=load_baseline(path))  # the lock a dead process held is free
    assert stored_values(path) == [1.0, 2.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-m.json", "stalled"]
