"""The run history: one new file per run, never rewritten, read back with clear problems."""

import json
import math
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from nightly_docs import START, commit_of, document, nights, result

from pytest_llmperf import history
from pytest_llmperf.errors import ResultsFileError
from pytest_llmperf.history import append_run, load_history, read_document, run_commits

NAME = re.compile(r"\d{8}T\d{6}Z_[0-9a-f]{12}_[0-9a-f]{8}\.json")


def one_night(night: int = 0, **kwargs):
    return nights(night + 1, lambda n, t: 1.0, **kwargs)[night]


def test_each_run_gets_a_new_file_named_by_time_commit_and_a_random_suffix(tmp_path):
    doc = one_night(3)
    first = append_run(tmp_path / "hist", doc)
    second = append_run(tmp_path / "hist", doc)
    assert first != second
    for path in (first, second):
        assert NAME.fullmatch(path.name), path.name
        assert path.name.startswith(f"20261004T030000Z_{commit_of(3)[:12]}_")
        assert json.loads(path.read_text()) == doc
    assert sorted(p.name for p in (tmp_path / "hist").iterdir()) == sorted(
        [first.name, second.name]
    )  # no temporary file left behind
    assert first.stat().st_mode & 0o777 == 0o644


def test_a_name_collision_draws_another_suffix_and_never_replaces(tmp_path, monkeypatch):
    suffixes = iter(["aaaaaaaa", "aaaaaaaa", "aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(history.secrets, "token_hex", lambda n: next(suffixes))
    doc_a, doc_b = one_night(0), one_night(0, seed=9)
    first = append_run(tmp_path, doc_a)
    before = (first.stat().st_ino, first.read_bytes())
    second = append_run(tmp_path, doc_b)
    assert first.name.endswith("_aaaaaaaa.json")
    assert second.name.endswith("_bbbbbbbb.json")
    assert (first.stat().st_ino, first.read_bytes()) == before
    assert json.loads(second.read_text()) == doc_b


def test_gives_up_clearly_when_every_name_is_taken(tmp_path, monkeypatch):
    monkeypatch.setattr(history.secrets, "token_hex", lambda n: "cccccccc")
    append_run(tmp_path, one_night())
    with pytest.raises(FileExistsError, match="were all taken"):
        append_run(tmp_path, one_night())
    assert len(list(tmp_path.iterdir())) == 1


def test_without_hard_links_the_name_is_claimed_exclusively(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(history.os, "link", no_links)
    suffixes = iter(["dddddddd", "dddddddd", "eeeeeeee"])
    monkeypatch.setattr(history.secrets, "token_hex", lambda n: next(suffixes))
    doc_a, doc_b = one_night(0), one_night(0, seed=2)
    first = append_run(tmp_path, doc_a)
    second = append_run(tmp_path, doc_b)
    assert second.name.endswith("_eeeeeeee.json")
    assert json.loads(first.read_text()) == doc_a
    assert json.loads(second.read_text()) == doc_b
    assert len(list(tmp_path.iterdir())) == 2


def test_a_nan_is_written_as_null_with_its_place_and_the_run_is_kept(tmp_path):
    # It used to make the encoder refuse the whole document: the run was lost from the history.
    doc = one_night()
    doc["results"][0]["stats"]["tpot_s"]["median"] = math.nan
    path = append_run(tmp_path / "h", doc)
    written = json.loads(path.read_text())
    assert written["results"][0]["stats"]["tpot_s"]["median"] is None
    assert written["nonfinite"] == {"results[0].stats.tpot_s.median": "nan"}
    assert [run.path for run in load_history(tmp_path / "h").runs] == [path]


def test_an_unserialisable_value_fails_before_anything_is_written(tmp_path):
    doc = {**one_night(), "command": [object()]}
    with pytest.raises(TypeError):
        append_run(tmp_path / "h", doc)
    assert not (tmp_path / "h").exists() or not list((tmp_path / "h").iterdir())


def test_concurrent_threads_never_clobber_each_other(tmp_path):
    doc = one_night()  # the same time and commit: every name shares its stem
    written: list[Path] = []
    lock = threading.Lock()

    def writer(k: int) -> None:
        for i in range(5):
            mine = {**doc, "command": [f"writer-{k}-{i}"]}
            path = append_run(tmp_path, mine)
            with lock:
                written.append(path)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(set(written)) == 40
    commands = sorted(json.loads(p.read_text())["command"][0] for p in tmp_path.iterdir())
    assert commands == sorted(f"writer-{k}-{i}" for k in range(8) for i in range(5))


def test_concurrent_processes_never_clobber_each_other(tmp_path):
    doc_path = tmp_path / "doc.json"
    doc_path.write_text(json.dumps(one_night()))
    code = (
        "import json, sys\nfrom pathlib import Path\n"
        "from pytest_llmperf.history import append_run\n"
        "doc = json.loads(Path(sys.argv[1]).read_text())\n"
        "for i in range(10):\n"
        "    append_run(Path(sys.argv[2]), {**doc, 'command': [sys.argv[3], str(i)]})\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(doc_path), str(tmp_path / "h"), str(k)])
        for k in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    loaded = load_history(tmp_path / "h")
    assert loaded.problems == []
    assert sorted(tuple(r.document["command"]) for r in loaded.runs) == sorted(
        (str(k), str(i)) for k in range(4) for i in range(10)
    )


def test_load_history_reports_unusable_files_and_keeps_the_rest(tmp_path):
    docs = nights(3, lambda n, t: 1.0)
    for doc in reversed(docs):  # written out of order: read back by time
        append_run(tmp_path, doc)
    full = (tmp_path / sorted(os.listdir(tmp_path))[0]).read_text()
    (tmp_path / "truncated.json").write_text(full[: len(full) // 2])
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "newer.json").write_text(json.dumps({**docs[0], "schema_version": 2}))
    (tmp_path / "baseline.json").write_text(json.dumps({"benchmarks": {}}))
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "bad-results.json").write_text(json.dumps({**docs[0], "results": [{"x": 1}]}))
    (tmp_path / ".llmperf-123.tmp").write_text("{")  # a run still writing: not a result yet
    (tmp_path / "notes.txt").write_text("not json")

    loaded = load_history(tmp_path)
    assert [r.document["created"] for r in loaded.runs] == [d["created"] for d in docs]
    assert [r.commit for r in loaded.runs] == [commit_of(n)[:10] for n in range(3)]
    problems = "\n".join(loaded.problems)
    assert len(loaded.problems) == 7, problems
    expected = {
        "truncated.json": "is not valid JSON (line",
        "empty.json": "is empty",
        "list.json": "not a pytest-llmperf results document (a JSON list)",
        "newer.json": "schema_version 2 is newer than this pytest-llmperf understands (1)",
        "baseline.json": "no schema_version (a baseline file",
        "binary.json": "is not UTF-8 text",
        "bad-results.json": "results[0] has no nodeid string",
    }
    for line in loaded.problems:
        name = next(n for n in expected if n in line)
        assert expected.pop(name) in line, line
        assert line.startswith("skipped ")
    assert not expected


def test_load_history_of_a_missing_or_wrong_path_is_a_clear_error(tmp_path):
    with pytest.raises(ResultsFileError, match="does not exist"):
        load_history(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(ResultsFileError, match="is not a directory"):
        load_history(tmp_path / "file")


def test_read_document_names_the_file_and_the_problem(tmp_path):
    with pytest.raises(ResultsFileError, match=r"missing\.json: no such file"):
        read_document(tmp_path / "missing.json")
    with pytest.raises(ResultsFileError, match="is a directory"):
        read_document(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**one_night(), "created": "yesterday"}))
    with pytest.raises(ResultsFileError, match="'created' is not an ISO-8601 time: 'yesterday'"):
        read_document(bad)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"schema_version": 1, "x": NaN}', "NaN is not a finite number"),
        ('{"schema_version": 1, "x": -Infinity}', "-Infinity is not a finite number"),
        ('{"schema_version": 1, "x": 1' + "0" * 400 + "}", "is too large"),
        ('{"schema_version": 1, "x": 1e400}', "is out of range"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper than"),
    ],
    ids=["nan", "infinity", "huge integer", "float overflow", "deep nesting"],
)
def test_read_document_refuses_numbers_no_run_writes_naming_the_file(tmp_path, text, reason):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(ResultsFileError) as info:
        read_document(bad)
    assert str(bad) in str(info.value) and reason in str(info.value)
    (tmp_path / "good.json").write_text(json.dumps(one_night()))
    history = load_history(tmp_path)  # one bad file is skipped with its reason, not a crash
    assert len(history.runs) == 1
    assert len(history.problems) == 1 and reason in history.problems[0]


def test_commits_come_from_commit_info_or_every_merged_source():
    doc = document([], created=START, commit=commit_of(1))
    assert run_commits(doc) == [commit_of(1)]
    assert run_commits(document([], created=START, commit=None)) == []  # "unversioned"
    merged = {**doc, "sources": [{"environment": doc["environment"]}, {"environment": {}}]}
    assert run_commits(merged) == [commit_of(1)]
    other = document([], created=START, commit=commit_of(2))["environment"]
    merged["sources"].append({"environment": other})
    assert run_commits(merged) == [commit_of(1), commit_of(2)]


def test_a_run_without_a_commit_is_named_nocommit(tmp_path):
    import random

    doc = document([result(random.Random(0), "t", "fake:m", level=1)], created=START, commit=None)
    assert "_nocommit_" in append_run(tmp_path, doc).name


def test_the_plugin_appends_each_run_to_the_history(fake):
    fake.makepyfile(
        """
        def test_bench(llm_bench):
            llm_bench("hello", max_tokens=3)
        """
    )
    for _ in range(2):
        result = fake.runpytest("--llm=fake:m", "--llm-runs=3", "--llm-history=hist")
        result.assert_outcomes(passed=1)
        assert result.ret == 0
    loaded = load_history(fake.path / "hist")
    assert loaded.problems == []
    assert len(loaded.runs) == 2
    assert loaded.runs[0].path != loaded.runs[1].path
    for run in loaded.runs:
        assert "_nocommit_" in run.path.name  # pytester's directory is no git checkout
        (res,) = run.document["results"]
        assert res["backend_id"] == "fake:m"
        assert res["stats"]["tpot_s"]["n"] == 3
    result.stdout.fnmatch_lines([f"*results written to {loaded.runs[1].path}*"])


def test_an_unwritable_history_fails_the_run_with_a_clear_line(fake):
    fake.makepyfile("def test_bench(llm_bench):\n    llm_bench('hi', max_tokens=2)\n")
    (fake.path / "blocker").write_text("a file, not a directory")
    result = fake.runpytest("--llm=fake:m", "--llm-runs=3", "--llm-history=blocker/hist")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(
        ["*could not add this run to the history in *blocker/hist: *Not a directory*"]
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["results"][0].pop("name"), "results[0] has no name string"),
        (
            lambda d: d["results"][0]["stats"].update(ttft_s=[1, 2]),
            "results[0] has stats.ttft_s [1, 2], not an object",
        ),
        (
            lambda d: d["results"][0]["samples"].update(ttft_s="0.1"),
            "results[0] has samples.ttft_s '0.1', not a list",
        ),
        (
            lambda d: d["results"][0].update(errors={"failed": 2, "by_kind": {}}),
            "results[0] has errors without attempts and retried counts",
        ),
        (
            lambda d: d.update(quality=[{"nodeid": "t.py::t", "backend": None, "score": 1}]),
            "quality[0] has no backend_id (a string, or null for a test without llm_backend)",
        ),
        (
            lambda d: d["environment"].update(commit_info="abc"),
            "'environment' has commit_info 'abc', not an object or null",
        ),
        (lambda d: d.update(backend_errors={"x": 1}), "'backend_errors' is not an object of"),
        (
            lambda d: d.update(sources=[{"created": d["created"]}]),
            "sources[0] has environment None, not an object",
        ),
    ],
    ids=[
        "no name",
        "stat list",
        "samples text",
        "errors",
        "quality",
        "commit_info",
        "backend_errors",
        "source",
    ],
)
def test_check_document_names_the_malformed_entry(change, problem):
    doc = one_night()
    assert history.check_document(doc) is None
    change(doc)
    found = history.check_document(doc)
    assert found is not None and found.startswith(problem), found
