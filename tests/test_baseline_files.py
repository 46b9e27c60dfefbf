"""Baseline files whose structure is valid but whose numbers are not: refused at session start,
before any test, with one line naming the file; never overwritten; and a save never writes a
file the next run would refuse."""

import json
import re

import pytest

from pytest_llmperf.baseline import baseline_path, load_baseline, save_baseline
from pytest_llmperf.errors import BaselineError

NODE = "test_x.py::test_a[fake:m]"
KEY = {"strict": {"cpu_model": "x"}, "soft": {"host": "h"}}
PARAMS = {"prompt": "hi", "max_tokens": 2, "temperature": 0.0, "seed": None, "options": {}}
CREATED = "2026-11-01T00:00:00+00:00"


def document(samples='{"tpot_s": [0.02, 0.03], "ttft_s": [0.1]}', run=None, runs=None):
    """A baseline's text with ``samples`` (JSON text, so NaN and 10**400 can be written)."""
    run = run or f'{{"created": "{CREATED}", "commit": null, "samples": {samples}}}'
    runs = runs if runs is not None else f"[{run}]"
    return (
        '{"schema_version": 1, "backend": "fake:m", "updated": "' + CREATED + '", '
        f'"key": {json.dumps(KEY)}, '
        f'"benchmarks": {{"{NODE}": {{"params": {json.dumps(PARAMS)}, "runs": {runs}}}}}}}'
    )


DEEP = "[" * 100_000 + "]" * 100_000
BAD_FILES = {
    "nan": (document('{"tpot_s": [0.02, NaN]}'), "NaN is not a finite number"),
    "infinity": (document('{"tpot_s": [Infinity]}'), "Infinity is not a finite number"),
    "negative": (document('{"tpot_s": [0.02, -0.01]}'), "sample 2 is -0.01, must be >= 0"),
    "huge integer": (document('{"output_tokens": [1' + "0" * 400 + "]}"), "is too large"),
    "float overflow": (document('{"ttft_s": [1e400]}'), "is out of range"),
    "run without created": (
        document(run='{"commit": null, "samples": {"tpot_s": [0.02]}}'),
        "created None is not an ISO-8601 time",
    ),
    "created not a time": (
        document(run='{"created": "yesterday", "samples": {"tpot_s": [0.02]}}'),
        "created 'yesterday' is not an ISO-8601 time",
    ),
    "no runs": (document(runs="[]"), "runs is empty"),
    "deep nesting": (document(samples='{"tpot_s": ' + DEEP + "}"), "nested deeper than"),
    "commit a number": (
        document(run=f'{{"created": "{CREATED}", "commit": 7, "samples": {{}}}}'),
        "commit must be a string or null",
    ),
    "key not objects": (
        document().replace('"strict": {"cpu_model": "x"}', '"strict": []'),
        "key.strict must be an object",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_number_in_a_baseline_is_refused_on_load_naming_the_file(tmp_path, kind):
    text, reason = BAD_FILES[kind]
    path = tmp_path / "fake-m.json"
    path.write_text(text)
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    message = str(info.value)
    assert str(path) in message
    assert reason in message
    assert "\n" not in message
    assert "never overwritten" in message


BENCH = """
import pathlib

def test_a(llm_bench):
    pathlib.Path("ran").write_text("yes")
    llm_bench("hi", max_tokens=2, runs=2, warmup=0)
"""


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_baseline_stops_the_run_before_any_test_and_is_kept(fake, kind):
    text, reason = BAD_FILES[kind]
    fake.makepyfile(test_x=BENCH)
    path = baseline_path(fake.path / "baselines", "fake:m", "fake:m")
    path.parent.mkdir()
    path.write_text(text)
    for args in ([], ["--llm-save-baseline"]):
        result = fake.runpytest("--llm=fake:m", *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        errors = [line for line in result.stderr.lines if str(path) in line]
        assert len(errors) == 1 and reason in errors[0]
        assert "Traceback" not in result.stderr.str() + result.stdout.str()
        assert not (fake.path / "ran").exists()
        assert path.read_text() == text


def test_zeros_are_measurements_a_baseline_may_hold(tmp_path):
    # A throughput window with no completion is 0, and so is an empty answer's token count:
    # the gate gives such data a verdict; the loader must not refuse it.
    path = tmp_path / "b.json"
    path.write_text(document('{"throughput_rps": [0, 0.0], "output_tokens": [0]}'))
    stored = load_baseline(path).benchmarks[NODE]
    assert stored.pooled("throughput_rps") == [0.0, 0.0]


def result(samples, params=PARAMS):
    return {"nodeid": NODE, "name": "", "params": params, "samples": samples}


def save(path, *results, existing=None):
    return save_baseline(
        existing, path, backend="fake:m", key=KEY, results=list(results), commit=None, keep=3
    )


def test_a_non_finite_sample_is_left_out_of_the_baseline_with_a_note(tmp_path):
    path = tmp_path / "b.json"
    notes = save(path, result({"tpot_s": [0.02, float("nan")], "ttft_s": [0.1, 0.2]}))
    assert any("tpot_s not stored" in n and "nan" in n for n in notes)
    stored = load_baseline(path).benchmarks[NODE]  # the next run can still read it
    assert stored.newest["samples"] == {"ttft_s": [0.1, 0.2]}


def test_a_save_that_would_not_load_again_is_refused_and_the_file_kept(tmp_path):
    path = tmp_path / "b.json"
    save(path, result({"tpot_s": [0.02]}))
    before = path.read_bytes()
    huge_seed = {**PARAMS, "seed": 2**64}  # beyond what the strict reader accepts
    with pytest.raises(BaselineError, match=r"would not load again.*left as it was"):
        save(path, result({"tpot_s": [0.03]}, params=huge_seed), existing=load_baseline(path))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]


def test_a_spec_with_a_surrogate_still_names_one_baseline_file(tmp_path):
    # A spec read from a non-UTF-8 command line holds a lone surrogate: hashing it must not
    # raise (it did: UnicodeEncodeError, an INTERNALERROR at session start).
    first = baseline_path(tmp_path, "fake:m?x=\udcff", "fake:m")
    assert first == baseline_path(tmp_path, "fake:m?x=\udcff", "fake:m")
    assert first != baseline_path(tmp_path, "fake:m?x=\udcfe", "fake:m")
    assert re.fullmatch(r"fake-m-[0-9a-f]{8}\.json", first.name)


def test_text_that_is_not_utf8_is_saved_and_read_back_exactly(tmp_path):
    path = tmp_path / "b.json"
    odd = {**PARAMS, "prompt": "caf\udce9"}  # a byte 0xE9 decoded with surrogateescape
    save(path, result({"tpot_s": [0.02]}, params=odd))
    assert load_baseline(path).benchmarks[NODE].params["prompt"] == "caf\udce9"
    save(path, result({"tpot_s": [0.03]}, params=odd), existing=load_baseline(path))
    assert len(load_baseline(path).benchmarks[NODE].runs) == 2


SURROGATE_BENCH = """
def test_a(llm_bench):
    llm_bench("caf\\udce9", max_tokens=2, runs=2, warmup=0)
"""


def test_a_run_whose_prompt_is_not_utf8_saves_its_baseline_and_writes_its_files(fake):
    fake.makepyfile(test_x=SURROGATE_BENCH)
    result = fake.runpytest("--llm=fake:m", "--llm-save-baseline", "--llm-json=out.json")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    [path] = (fake.path / "baselines").glob("*.json")
    [stored] = load_baseline(path).benchmarks.values()
    assert stored.params["prompt"] == "caf\udce9"
    doc = json.loads((fake.path / "out.json").read_text(encoding="utf-8"))
    assert doc["results"][0]["params"]["prompt"] == "caf\udce9"
