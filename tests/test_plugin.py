"""The plugin's machinery: options, ini keys, specs, markers, reports (with the fake backend)."""

import json

import pytest

from pytest_llmperf.environment import cuda_device_count
from pytest_llmperf.results import write_json_atomic

BENCH_TEST = """
import json, pathlib

def test_bench(llm_bench):
    result = llm_bench("hello there", max_tokens=4)
    pathlib.Path("seen.json").write_text(json.dumps({"runs": result.runs, "warmup": result.warmup}))
"""


def seen(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "seen.json").read_text())


def test_help_lists_every_option_and_its_ini_key(pytester):
    result = pytester.runpytest("--help")
    out = result.stdout.str()
    for flag in ("--llm=SPEC", "--llm-runs=N", "--llm-warmup=N", "--llm-json=PATH"):
        assert flag in out
    for ini in ("llm (linelist)", "llm_runs", "llm_warmup", "llm_json"):
        assert ini in out
    assert "--llm-list-backends" in out


def test_markers_are_registered_for_strict_markers(fake):
    fake.makepyfile(
        """
        import pytest

        @pytest.mark.llm_perf(runs=1)
        @pytest.mark.llm_backends("fake")
        @pytest.mark.api("openai")
        @pytest.mark.gpu
        def test_x():
            pass
        """
    )
    result = fake.runpytest("--strict-markers", "--llm=fake:m", "--co", "-q")
    result.assert_outcomes()
    assert result.ret == 0
    markers = fake.runpytest("--markers").stdout.str()
    for name in ("llm_perf(", "llm_backends(", "@pytest.mark.gpu:", "api(name)"):
        assert name in markers


def test_each_spec_parametrizes_llm_backend_with_a_readable_id(fake):
    fake.makepyfile(
        """
        def test_kind(llm_backend):
            assert llm_backend.kind == "fake"
            assert llm_backend.model in ("/models/a", "b")
        """
    )
    result = fake.runpytest("-v", "--llm=fake:/models/a?delay_ms=0", "--llm=fake:b")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*test_kind?fake:a?delay_ms=0? PASSED*", "*test_kind?fake:b? PASSED*"]
    )


def test_llm_backends_marker_skips_other_kinds_with_a_reason(fake):
    fake.makepyfile(
        """
        import pytest

        @pytest.mark.llm_backends("llamacpp")
        def test_only_llamacpp(llm_backend):
            raise AssertionError("must not run on fake")
        """
    )
    result = fake.runpytest("-rs", "--llm=fake:m")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*llm_backends(llamacpp): not fake*"])


@pytest.mark.parametrize(
    ("ini", "args", "marker", "expected"),
    [
        ("", [], "", {"runs": 10, "warmup": 1}),
        ("llm_runs = 3\nllm_warmup = 0", [], "", {"runs": 3, "warmup": 0}),
        ("llm_runs = 3", ["--llm-runs=4", "--llm-warmup=2"], "", {"runs": 4, "warmup": 2}),
        (
            "llm_runs = 3",
            ["--llm-runs=4"],
            "@pytest.mark.llm_perf(runs=2)",
            {"runs": 2, "warmup": 1},
        ),
    ],
)
def test_runs_and_warmup_precedence(fake, ini, args, marker, expected):
    fake.makeini(f"[pytest]\n{ini}\n")
    fake.makepyfile(
        "import pytest\n" + BENCH_TEST.replace("def test_bench", f"{marker}\ndef test_bench")
    )
    fake.runpytest("--llm=fake:m", *args).assert_outcomes(passed=1)
    assert seen(fake) == expected


@pytest.mark.parametrize(
    ("ini", "args", "message"),
    [
        (
            "llm_runs = many",
            [],
            "ini option 'llm_runs': invalid value 'many': expected a whole number >= 1",
        ),
        ("", ["--llm-runs=0"], "--llm-runs: invalid value '0': expected a whole number >= 1"),
        ("", ["--llm-warmup=-1"], "--llm-warmup: invalid value '-1': expected a whole number >= 0"),
    ],
)
def test_bad_setting_values_are_usage_errors_naming_the_source(fake, ini, args, message):
    fake.makeini(f"[pytest]\n{ini}\n")
    fake.makepyfile(BENCH_TEST)
    result = fake.runpytest("--llm=fake:m", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_specs_come_from_cli_then_env_then_ini(fake, monkeypatch):
    fake.makeini("[pytest]\nllm =\n    fake:from-ini-1\n    fake:from-ini-2\n")
    fake.makepyfile("def test_x(llm_backend):\n    pass\n")
    out = fake.runpytest("--co", "-q").stdout.str()
    assert "fake:from-ini-1" in out and "fake:from-ini-2" in out
    monkeypatch.setenv("LLMPERF_LLM", "fake:from-env-1 fake:from-env-2")
    out = fake.runpytest("--co", "-q").stdout.str()
    assert "fake:from-env-1" in out and "from-ini" not in out
    out = fake.runpytest("--co", "-q", "--llm=fake:from-cli").stdout.str()
    assert "fake:from-cli" in out and "from-env" not in out


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nonsense", "--llm='nonsense': expected KIND:MODEL"),
        ("foo:bar", "unknown backend kind 'foo'; valid kinds: bedrock, fake, hf, llamacpp, openai"),
        ("hf:org/model?dtype=fp8", "bad value 'fp8' for option 'dtype': expected one of"),
        ("bedrock:m?latency=fast", "bad value 'fast' for option 'latency': expected one of"),
        (
            "fake:m?speed=9",
            "unknown option 'speed' for fake; valid: chat_template, delay_ms, empty, fail_check,",
        ),
        ("fake:m?delay_ms=soon", "bad value 'soon' for option 'delay_ms': expected float"),
        ("fake:m?fail_check=1", "fake pre-flight failure: install the fake extra"),
        ("llamacpp:", "the model is empty"),
    ],
)
def test_bad_specs_stop_the_run_before_any_test(fake, spec, message):
    fake.makepyfile("def test_x(llm_backend):\n    raise AssertionError('ran')\n")
    result = fake.runpytest(f"--llm={spec}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "ran" not in result.stdout.str()


def test_a_backend_that_fails_to_load_is_reported_once_without_traceback(fake):
    fake.makepyfile(
        """
        def test_one(llm_backend):
            pass

        def test_two(llm_bench):
            llm_bench("x")
        """
    )
    result = fake.runpytest("--llm=fake:broken?fail_load=1", "--llm-json=out.json")
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    assert "ModelLoadError: fake model 'broken' is corrupt" in out
    assert "broken?fail_load=1 could not start (reported at the first test that used it)" in out
    assert "Traceback" not in out
    assert out.count("backends that could not start") == 1
    doc = json.loads((fake.path / "out.json").read_text())
    assert doc["backend_errors"] == {"fake:broken?fail_load=1": "fake model 'broken' is corrupt"}
    assert doc["results"] == []


def test_json_results_carry_samples_stats_and_environment(fake):
    fake.makepyfile(
        """
        import pytest

        @pytest.mark.llm_perf(runs=3, warmup=1, max_tokens=8)
        def test_a(llm_bench):
            llm_bench("one two three")
            llm_bench("four", name="second", runs=2)
        """
    )
    result = fake.runpytest("--llm=fake:m?tokens_per_chunk=3", "--llm-json=sub/results.json")
    result.assert_outcomes(passed=1)
    path = fake.path / "sub" / "results.json"
    doc = json.loads(path.read_text())
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp file left
    assert doc["schema_version"] == 1
    assert doc["settings"]["runs"] == "auto"
    assert doc["settings"]["looks"] == [10, 20, 40]
    assert doc["settings"]["tolerances"]["tpot_s"] == 0.05
    env = doc["environment"]
    for key in ("cpu_model", "cpu_count", "ram_bytes", "gpus", "os", "python", "libraries"):
        assert key in env
    assert "pytest-llmperf" in env["libraries"]
    assert "commit_info" in env and "machine_info" in env
    [backend] = doc["backends"]
    assert backend["spec"] == "fake:m?tokens_per_chunk=3"
    assert backend["load_s"] >= 0
    first, second = doc["results"]
    assert (first["name"], second["name"]) == ("", "second")
    assert first["runs"] == 3 and len(first["generations"]) == 3
    assert first["samples"]["output_tokens"] == [8, 8, 8]
    assert [g["chunks"] for g in first["generations"]] == [3, 3, 3]  # 3+3+2 tokens
    assert first["stats"]["output_tokens"]["median"] == 8
    assert first["stats"]["prompt_tokens"]["median"] == 3
    assert len(first["samples"]["itl_s"]) == 3 * 5  # (3+2) tokens after the first chunk
    assert first["params"]["max_tokens"] == 8
    assert second["runs"] == 2
    assert "results written to" in result.stdout.str()


def test_terminal_table_has_a_row_per_test_and_backend(fake):
    fake.makepyfile(
        BENCH_TEST.replace("def test_bench", "def test_bench_a")
        + BENCH_TEST.replace("def test_bench", "def test_bench_b")
    )
    result = fake.runpytest("--llm=fake:m1", "--llm=fake:m2", "--llm-runs=2")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*llmperf: latency*",
            "test*backend*runs*TTFT ms*TPOT ms*tok/s*s/token*tokens",
            "test_bench_a*fake:m1*2*",
            "test_bench_a*fake:m2*2*",
            "test_bench_b*fake:m1*2*",
            "test_bench_b*fake:m2*2*",
        ]
    )
    assert all(len(line) <= 100 for line in result.stdout.lines if "fake:m" in line)


def test_result_hook_sees_every_benchmark(fake):
    fake.makeconftest(
        fake.path.joinpath("conftest.py").read_text()
        + "\nSEEN = []\n\ndef pytest_llmperf_result(config, result):\n"
        "    SEEN.append(result['backend'])\n\n"
        "def pytest_sessionfinish(session):\n"
        "    open('hook.txt', 'w').write(','.join(SEEN))\n"
    )
    fake.makepyfile(BENCH_TEST)
    fake.runpytest("--llm=fake:a", "--llm=fake:b", "--llm-runs=1").assert_outcomes(passed=2)
    assert sorted((fake.path / "hook.txt").read_text().split(",")) == ["fake:a", "fake:b"]


def test_gpu_marker_skips_with_a_reason_where_no_gpu_is_visible(pytester):
    pytester.makepyfile("import pytest\n\n@pytest.mark.gpu\ndef test_gpu():\n    pass\n")
    result = pytester.runpytest("-rs")
    if cuda_device_count():
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(
            ["SKIPPED ?1? test_gpu*.py:3: needs a CUDA GPU*none is visible*"]
        )


def test_api_marker_follows_credentials(pytester, monkeypatch):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.api("openai")
        def test_needs_openai():
            pass
        """
    )
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED ?1? test_api_marker_follows_credentials.py:3: "
            "needs openai credentials*OPENAI_API_KEY is not set"
        ]
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    pytester.runpytest().assert_outcomes(passed=1)


def test_unknown_api_name_is_a_usage_error(pytester):
    pytester.makepyfile("import pytest\n\n@pytest.mark.api('nope')\ndef test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "test_x: @pytest.mark.api: unknown API 'nope'; known: openai, bedrock"
        in result.stderr.str()
    )


def test_bad_llm_perf_marker_is_a_clear_failure(fake):
    fake.makepyfile(
        "import pytest\n\n@pytest.mark.llm_perf(rounds=3)\n"
        "def test_x(llm_bench):\n    llm_bench('x')\n"
    )
    result = fake.runpytest("--llm=fake:m")
    result.assert_outcomes(errors=1)
    assert (
        "llm_perf takes keyword arguments ignore_eos, max_tokens, prefix_cache, runs, tolerance, "
        "warmup; got ['rounds']" in result.stdout.str()
    )


def test_list_backends_shows_kinds_and_options(fake):
    result = fake.runpytest("--llm-list-backends")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "fake*",
            "*tokens_per_chunk=int (default 1)*",
            "llamacpp*",
            "*n_ctx=int (default 2048)*",
            "every kind*",
            "*ignore_eos=bool (default False)*",
            "*prefix_cache=allow|bust (default 'allow')*",
        ]
    )


def test_a_second_backend_for_a_kind_is_rejected(fake):
    fake.makeconftest(
        fake.path.joinpath("conftest.py").read_text() + "\nclass Other(FakeBackend):\n    pass\n\n"
        "def pytest_llmperf_register_backends(register):\n"
        "    register(FakeBackend)\n    register(Other)\n"
    )
    result = fake.runpytest("--llm=fake:m")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "two backends registered for kind 'fake'" in result.stderr.str()


def test_json_writer_keeps_the_old_file_when_serialising_fails(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"old": true}')
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json_atomic(path, {"bad": object()})
    assert path.read_text() == '{"old": true}'
    assert list(tmp_path.iterdir()) == [path]


def test_json_writer_writes_a_nan_as_null_and_says_where(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"runs": [{"ratio": float("inf")}], "n": float("nan")})
    assert json.loads(path.read_text()) == {
        "runs": [{"ratio": None}],
        "n": None,
        "nonfinite": {"runs[0].ratio": "inf", "n": "nan"},
    }


def test_unwritable_json_path_is_reported_not_a_traceback(fake):
    fake.makepyfile(BENCH_TEST)
    blocker = fake.path / "file"
    blocker.write_text("a file where a directory should be")
    result = fake.runpytest("--llm=fake:m", "--llm-runs=1", f"--llm-json={blocker}/sub/r.json")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines([f"llmperf: could not write {blocker}/sub/r.json: *"])
    assert "Traceback" not in result.stdout.str()
    result = fake.runpytest("--llm=fake:m", f"--llm-json={fake.path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "is a directory, not a file" in result.stderr.str()


def test_help_works_even_with_a_bad_spec_in_the_environment(pytester, monkeypatch):
    monkeypatch.setenv("LLMPERF_LLM", "nonsense")
    result = pytester.runpytest("--help")
    assert result.ret == 0
    assert "--llm=SPEC" in result.stdout.str()
