"""pytest-xdist: every result reaches the controller once; --llm-device-groups pins each backend
(Python tests and YAML suite cases alike) to one worker; ids stay those of a serial run."""

import json
import textwrap
from collections import Counter

import pytest

from pytest_llmperf._xdist import backend_group

BENCH = """
import pytest

@pytest.mark.parametrize("i", range(3))
def test_many(llm_bench, i):
    llm_bench(f"prompt {i}")

def test_two_calls(llm_bench):
    llm_bench("first")
    llm_bench("second", name="again")
"""

SUITE = """
defaults:
  max_tokens: 4
cases:
  - id: yaml_case
    prompt: hello from a suite
"""

# Each process logs the fake backend's generations to its own file, the way a conftest would
# give each worker its own GPU (CUDA_VISIBLE_DEVICES from PYTEST_XDIST_WORKER).
PER_WORKER_LOG = """

def pytest_configure(config):
    log_dir = os.environ.get("CALL_LOG_DIR")
    if log_dir:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        os.environ["FAKE_CALL_LOG"] = os.path.join(log_dir, worker + ".log")
"""

BACKENDS = ("--llm=fake:a", "--llm=fake:b")
QUICK = ("--llm-runs=3", "--llm-warmup=1")
#: Benchmarks per backend: test_many x3, test_two_calls x2, the suite case.
BENCHES = 6
#: Tests per backend.
ITEMS = 5


@pytest.fixture
def suite_dir(fake, monkeypatch, tmp_path):
    fake.makeconftest((fake.path / "conftest.py").read_text() + PER_WORKER_LOG)
    fake.makepyfile(test_x=BENCH)
    (fake.path / "cases.llmsuite.yaml").write_text(textwrap.dedent(SUITE))
    logs = tmp_path / "logs"
    logs.mkdir()
    monkeypatch.setenv("CALL_LOG_DIR", str(logs))
    monkeypatch.delenv("FAKE_CALL_LOG", raising=False)
    return fake


def run(pytester, *args):
    return pytester.runpytest_subprocess(
        "-p", "xdist", "-n", "2", *BACKENDS, *QUICK, "--llm-json=out.json", *args
    )


def document(pytester):
    return json.loads((pytester.path / "out.json").read_text())


def assert_every_result_once(doc):
    keys = Counter((r["nodeid"], r["name"], r["backend"]) for r in doc["results"])
    assert len(keys) == 2 * BENCHES
    assert set(keys.values()) == {1}


def test_device_groups_pin_each_backend_to_one_worker(suite_dir, tmp_path):
    result = run(suite_dir, "--dist", "loadgroup", "--llm-device-groups", "--llm-save-baseline")
    result.assert_outcomes(passed=2 * ITEMS)
    doc = document(suite_dir)
    assert_every_result_once(doc)
    assert any(r["nodeid"].startswith("cases.llmsuite.yaml::") for r in doc["results"])
    # xdist's "@group" id suffix is for its scheduler only.
    assert not any("@" in r["nodeid"] for r in doc["results"])

    workers = {
        backend: {r["worker"] for r in doc["results"] if r["backend"] == backend}
        for backend in ("fake:a", "fake:b")
    }
    assert all(len(w) == 1 for w in workers.values()), workers
    assert workers["fake:a"] | workers["fake:b"] == {"gw0", "gw1"}
    # Each backend loaded once, in the worker that ran its tests.
    assert sorted((b["spec"], {b["worker"]}) for b in doc["backends"]) == sorted(workers.items())

    # The generations themselves: each backend's in one worker process only, all of them.
    logs = {path.stem: path.read_text().split() for path in (tmp_path / "logs").glob("*.log")}
    assert sorted(logs) == ["gw0", "gw1"]
    per_log = {worker: Counter(models) for worker, models in logs.items()}
    expected = {"a": BENCHES * 4, "b": BENCHES * 4}  # warm-up + 3 runs per benchmark
    assert sorted(per_log.values(), key=sorted) == [
        Counter({"a": expected["a"]}),
        Counter({"b": expected["b"]}),
    ]
    assert per_log[next(iter(workers["fake:a"]))] == Counter({"a": expected["a"]})

    # One baseline per backend, written once by the controller.
    files = sorted((suite_dir.path / "baselines").glob("*.json"))
    assert len(files) == 2
    for path in files:
        stored = json.loads(path.read_text())
        assert len(stored["benchmarks"]) == BENCHES
        assert all(len(entry["runs"]) == 1 for entry in stored["benchmarks"].values())
        assert not any("@" in bid for bid in stored["benchmarks"])
        assert stored["key"]["strict"]["xdist_workers"] == 2
    out = result.stdout.str()
    assert out.count(f"llmperf: saved {BENCHES} benchmark(s) of fake:a to") == 1
    assert out.count(f"llmperf: saved {BENCHES} benchmark(s) of fake:b to") == 1
    assert out.count("llmperf: latency (medians over timed runs)") == 1
    assert out.count("llmperf: results written to") == 1


def test_without_groups_everything_is_gathered_and_a_grouped_run_finds_its_baseline(suite_dir):
    saved = run(suite_dir, "--llm-save-baseline")
    saved.assert_outcomes(passed=2 * ITEMS)
    doc = document(suite_dir)
    assert_every_result_once(doc)
    assert {r["worker"] for r in doc["results"]} <= {"gw0", "gw1"}
    assert saved.stdout.str().count("llmperf: latency (medians over timed runs)") == 1

    # Same worker count, now grouped: the tests keep their ids, so every benchmark is
    # compared with the baseline saved above.
    grouped = run(suite_dir, "--dist", "loadgroup", "--llm-device-groups")
    grouped.assert_outcomes(passed=2 * ITEMS)
    doc = document(suite_dir)
    assert_every_result_once(doc)
    gates = [r["gate"] for r in doc["results"]]
    assert all(g is not None and g["mode"] == "stored" for g in gates), gates
    assert not any(g["verdict"] == "REFUSED" for g in gates)


@pytest.mark.parametrize("where", ["option", "ini"])
def test_device_groups_need_dist_loadgroup(fake, where):
    fake.makepyfile(test_x=BENCH)
    args = ["-p", "xdist", "-n", "2", "--llm=fake:a"]
    if where == "option":
        args.append("--llm-device-groups")
    else:
        fake.makeini("[pytest]\nllm_device_groups = true\n")
    result = fake.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    source = "--llm-device-groups" if where == "option" else "ini option 'llm_device_groups'"
    result.stderr.fnmatch_lines(
        [
            f"*{source} pins each backend to one xdist worker*(this run has --dist load)*"
            "add --dist loadgroup*"
        ]
    )


def test_device_groups_without_xdist_workers_change_nothing(fake):
    fake.makepyfile(test_x=BENCH)
    result = fake.runpytest("-p", "xdist", "--llm=fake:a", *QUICK, "--llm-device-groups", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["test_x.py::test_two_calls[[]fake:a[]] PASSED*"])


def test_the_scheduler_finds_the_backend_in_a_test_id():
    groups = {sid: sid for sid in ("fake:a", "fake:ab", "llamacpp:gemma3-270m")}
    assert backend_group("t.py::test[fake:a-0]", groups) == "fake:a"
    assert backend_group("t.py::test[0-fake:ab]", groups) == "fake:ab"
    assert backend_group("t.py::C::test[llamacpp:gemma3-270m-3]", groups) == "llamacpp:gemma3-270m"
    # pytest's suffix for duplicate ids: a whole part no longer, still the longest match
    assert backend_group("t.py::test[0-fake:ab1]", groups) == "fake:ab"
    assert backend_group("cases.llmsuite.yaml::case[fake:a]", groups) == "fake:a"
    assert backend_group("t.py::test[other]", groups) is None
    assert backend_group("t.py::test", groups) is None
