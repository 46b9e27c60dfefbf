"""The regression gate end to end: save, compare, every verdict, refusals, relative mode, xdist.

The fake backend really sleeps, so latencies are real; effects are made large (4x) so that
verdicts do not depend on this machine's noise.
"""

import json

import pytest

BENCH = """
import pytest

@pytest.mark.llm_perf(max_tokens=4, warmup=0)
def test_a(llm_bench):
    llm_bench("hello there")
"""


@pytest.fixture
def gate(fake, monkeypatch):
    fake.makepyfile(BENCH)
    monkeypatch.setenv("FAKE_DELAY_MS", "2")
    return fake


def save(pytester, *args):
    result = pytester.runpytest("--llm=fake:m", "--llm-save-baseline", *args)
    result.assert_outcomes(passed=1)
    return result


def baseline_file(pytester):
    [path] = (pytester.path / "baselines").glob("*.json")
    return path


def run_json(pytester, *args):
    result = pytester.runpytest("--llm=fake:m", "--llm-json=out.json", *args)
    doc = json.loads((pytester.path / "out.json").read_text())
    return result, doc["results"][0]["gate"]


def test_save_then_compare_the_same_thing_passes_before_the_last_look(gate, monkeypatch):
    # 10 ms steps: sleep jitter on a busy machine (~0.5 ms) must not blur an A/A comparison
    # into needing the last look.
    monkeypatch.setenv("FAKE_DELAY_MS", "10")
    result = save(gate)
    result.stdout.fnmatch_lines(["llmperf: saved 1 benchmark(s) of fake:m to *baselines*"])
    doc = json.loads(baseline_file(gate).read_text())
    assert doc["schema_version"] == 1
    [(bid, entry)] = doc["benchmarks"].items()
    assert (
        bid
        == "test_save_then_compare_the_same_thing_passes_before_the_last_look.py::test_a[fake:m]"
    )
    assert len(entry["runs"]) == 1
    assert len(entry["runs"][0]["samples"]["tpot_s"]) == 40  # saving samples the last look
    assert doc["key"]["strict"]["backend_options"]["delay_ms"] == 0.0

    result, g = run_json(gate)
    result.assert_outcomes(passed=1)
    assert (g["verdict"], g["mode"]) == ("PASS", "stored")
    # Sequential looks (when each stops is checked on synthetic data in test_gate_units: here,
    # real sleeps on a shared machine decide whether 10 samples already settle it).
    assert (g["looks"], g["samples"] in (10, 20, 40)) == ([10, 20, 40], True)
    assert {m["metric"] for m in g["metrics"]} == {"tpot_s", "ttft_s"}
    assert all(m["effective_tolerance"] == 0.30 for m in g["metrics"])
    result.stdout.fnmatch_lines(
        [
            "*llmperf: gate 1 PASS*",
            "smallest detectable slowdown, fake:m tpot_s: +30% (1 stored run(s) < 3: *)",
        ]
    )


def test_saving_pools_the_last_k_runs(gate):
    for _ in range(3):
        save(gate, "--llm-baseline-keep=2")
    [entry] = json.loads(baseline_file(gate).read_text())["benchmarks"].values()
    assert len(entry["runs"]) == 2


def test_a_real_slowdown_fails_with_an_actionable_message(gate, monkeypatch):
    save(gate)
    monkeypatch.setenv("FAKE_DELAY_MS", "8")
    result, g = run_json(gate)
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert g["verdict"] == "REGRESSION"
    assert g["confirmation"]["first_verdict"] == "REGRESSION"
    result.stdout.fnmatch_lines(
        [
            "*TPOT regressed +*% (90% CI +*%..+*%, p=*, * adjusted for 2 comparisons x 3 looks; "
            "tolerance 30% widened from 5% for drift)*vs baseline of 20*-*-*; 1 run(s) pooled "
            "(confirmed by a re-run)",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_no_confirm_fails_on_the_first_regression(gate, monkeypatch):
    save(gate)
    monkeypatch.setenv("FAKE_DELAY_MS", "8")
    result, g = run_json(gate, "--llm-no-confirm")
    result.assert_outcomes(failed=1)
    assert g["confirmation"] is None
    assert g["samples"] == 10


def test_a_transient_slowdown_is_not_confirmed(gate, monkeypatch):
    save(gate)
    monkeypatch.setenv("FAKE_SLOW_FIRST", "10")  # only the first look is slow
    result, g = run_json(gate)
    result.assert_outcomes(passed=1)
    assert g["confirmation"]["first_verdict"] == "REGRESSION"
    assert g["verdict"] == "PASS"


def test_fail_on_none_reports_without_failing(gate, monkeypatch):
    save(gate)
    monkeypatch.setenv("FAKE_DELAY_MS", "8")
    result, g = run_json(gate, "--llm-fail-on=none")
    result.assert_outcomes(passed=1)
    assert g["verdict"] == "REGRESSION"
    result.stdout.fnmatch_lines(["REGRESSION test_a [[]fake:m]: TPOT regressed*"])


def test_a_speedup_is_an_improvement(gate, monkeypatch):
    monkeypatch.setenv("FAKE_DELAY_MS", "8")
    save(gate)
    monkeypatch.setenv("FAKE_DELAY_MS", "2")
    result, g = run_json(gate)
    result.assert_outcomes(passed=1)
    assert g["verdict"] == "IMPROVEMENT"
    result.stdout.fnmatch_lines(["IMPROVEMENT test_a [[]fake:m]: TPOT improved -*"])


def test_tolerance_from_the_command_line_and_the_marker(gate, monkeypatch):
    save(gate)
    monkeypatch.setenv("FAKE_DELAY_MS", "8")
    result, g = run_json(gate, "--llm-tolerance=tpot_s=900%,ttft_s=900%")
    result.assert_outcomes(passed=1)
    assert g["verdict"] != "REGRESSION"
    gate.makepyfile(BENCH.replace("warmup=0", "warmup=0, tolerance='tpot_s=900%,ttft_s=900%'"))
    result, g = run_json(gate)
    assert g["verdict"] != "REGRESSION"
    assert {m["tolerance"] for m in g["metrics"]} == {9.0}


def test_another_machine_is_refused_saying_what_differs(gate):
    save(gate)
    path = baseline_file(gate)
    doc = json.loads(path.read_text())
    doc["key"]["strict"]["cpu_model"] = "Imaginary CPU 9000"
    path.write_text(json.dumps(doc))
    result, g = run_json(gate, "-W", "default")
    result.assert_outcomes(passed=1)
    assert g["verdict"] == "REFUSED"
    assert "cpu_model: 'Imaginary CPU 9000' -> " in g["reason"]
    result.stdout.fnmatch_lines(["REFUSED test_a [[]fake:m]: * was stored under another setup*"])
    assert "LLMPerfWarning" in result.stdout.str()

    result, g = run_json(gate, "--llm-compare-across-machines")
    assert g["verdict"] == "PASS"
    assert any("COMPARING ACROSS SETUPS" in w for w in g["warnings"])


def test_a_changed_workload_is_refused(gate):
    save(gate)
    gate.makepyfile(BENCH.replace("max_tokens=4", "max_tokens=5"))
    _result, g = run_json(gate)
    assert g["verdict"] == "REFUSED"
    assert "max_tokens" in g["reason"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is unreadable or corrupt"),
        ('{"schema_version": 99, "benchmarks": {}}', "newer than this pytest-llmperf understands"),
        ('{"schema_version": 1}', "does not have the expected structure"),
    ],
)
def test_a_bad_baseline_file_is_an_error_and_never_overwritten(gate, content, message):
    save(gate)
    path = baseline_file(gate)
    path.write_text(content)
    for args in ([], ["--llm-save-baseline"]):
        result = gate.runpytest("--llm=fake:m", *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert message in result.stderr.str()
        assert str(path) in result.stderr.str()
        assert path.read_text() == content


def test_a_drifting_run_is_unstable_not_failed(gate, monkeypatch):
    monkeypatch.setenv("FAKE_DELAY_MS", "4")
    save(gate)
    # From 0.5 ms to 7.5 ms per step across the 15 runs: a steady climb that straddles the
    # baseline's 4 ms, so only the trend, not a plain shift, explains the samples.
    monkeypatch.setenv("FAKE_GROWTH_MS", "0.5")
    monkeypatch.setenv("FAKE_GROWTH_CENTER", "8")
    result, g = run_json(gate, "--llm-runs=15")
    result.assert_outcomes(passed=1)
    assert g["verdict"] == "UNSTABLE"
    result.stdout.fnmatch_lines(["UNSTABLE test_a [[]fake:m]: the samples drift monotonically*"])


def test_too_few_samples_are_inconclusive_with_a_hint(gate):
    save(gate, "--llm-runs=3")
    result, g = run_json(gate, "--llm-runs=3")
    result.assert_outcomes(passed=1)
    assert g["verdict"] == "INCONCLUSIVE"
    result.stdout.fnmatch_lines(
        ["INCONCLUSIVE test_a [[]fake:m] after 3 samples: about * per side would likely settle it*"]
    )


def test_relative_mode_interleaves_and_gates_on_the_difference(fake, monkeypatch, tmp_path):
    fake.makepyfile(BENCH)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_CALL_LOG", str(log))
    result = fake.runpytest(
        "--llm=fake:cand?delay_ms=8",
        "--llm-compare-to=fake:ref?delay_ms=2",
        "--llm-no-confirm",
        "--llm-json=out.json",
    )
    result.assert_outcomes(failed=1)
    assert log.read_text().split()[:6] == ["cand", "ref", "ref", "cand", "cand", "ref"]
    [res] = json.loads((fake.path / "out.json").read_text())["results"]
    assert res["gate"]["mode"] == "relative"
    assert len(res["reference_generations"]) == res["runs"]
    result.stdout.fnmatch_lines(["*regressed*vs fake:ref?delay_ms=2 (same job, interleaved)*"])


def test_relative_a_a_uses_two_instances_and_passes(fake):
    fake.makepyfile(BENCH)
    result = fake.runpytest(
        "--llm=fake:m?delay_ms=3", "--llm-compare-to=fake:m?delay_ms=3", "--llm-json=out.json"
    )
    result.assert_outcomes(passed=1)
    doc = json.loads((fake.path / "out.json").read_text())
    assert sorted(b["role"] for b in doc["backends"]) == ["candidate", "reference"]
    assert doc["results"][0]["gate"]["verdict"] in ("PASS", "INCONCLUSIVE")
    result.stdout.fnmatch_lines(["llmperf: fake:m?delay_ms=3 (*relative to fake:m?delay_ms=3)"])


def test_xdist_saves_once_and_serial_runs_refuse_a_parallel_baseline(fake, monkeypatch):
    monkeypatch.setenv("FAKE_DELAY_MS", "1")
    fake.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(4))
        @pytest.mark.llm_perf(max_tokens=4, warmup=0, runs=5)
        def test_many(llm_bench, i):
            llm_bench(f"prompt {i}")
        """
    )
    result = fake.runpytest_subprocess(
        "-p", "xdist", "-n", "2", "--llm=fake:m", "--llm-save-baseline"
    )
    result.assert_outcomes(passed=4)
    doc = json.loads(baseline_file(fake).read_text())
    assert len(doc["benchmarks"]) == 4
    assert doc["key"]["strict"]["xdist_workers"] == 2
    assert [p.name for p in (fake.path / "baselines").iterdir()] == [baseline_file(fake).name]
    result, g = run_json(fake)
    assert g["verdict"] == "REFUSED"
    assert "xdist_workers: 2 -> 0" in g["reason"]
