"""The shipped suites as a newcomer runs them: ``pytest suites/`` on the embedded model passes
(chat suites skipped with the reason), and a chat suite on a model without a chat template skips
saying how to supply one. Real llama.cpp; few runs, since this checks outcomes, not speed."""

import shutil
from pathlib import Path

import pytest
from tiny_gguf import write_tiny_gguf

pytest.importorskip("llama_cpp")

SUITES = Path(__file__).parent.parent / "suites"
CHAT_SUITES = ("finance-qa", "reasoning", "instructions")
FAST = ("--llm-runs=2", "--llm-warmup=0", "-p", "no:randomly", "-rs")


@pytest.fixture
def suites(pytester: pytest.Pytester) -> pytest.Pytester:
    shutil.copytree(SUITES, pytester.path / "suites")
    return pytester


def test_pytest_suites_on_the_embedded_model_passes_with_the_chat_suites_skipped(suites):
    result = suites.runpytest("suites/", *FAST)
    out = result.stdout.str()
    assert result.ret == 0, out
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes and "errors" not in outcomes
    # latency: the YAML twin and the Python file, three benchmarks each, every one measured
    assert outcomes["passed"] == 6
    for name in CHAT_SUITES:
        assert f"{name}.llmsuite.yaml" in out
    assert "llamacpp:gemma3-270m is a base model that continues text" in out
    assert "llm_load needs a backend that talks to a server" in out  # serving-load
    assert "empty or short generations" not in out  # ignore_eos held every length


def test_a_chat_suite_on_a_model_without_a_template_skips_saying_how_to_supply_one(
    suites, tmp_path
):
    model = write_tiny_gguf(tmp_path / "plain.gguf", chat_template=None)
    result = suites.runpytest("suites/instructions.llmsuite.yaml", f"--llm=llamacpp:{model}", *FAST)
    out = result.stdout.str()
    assert result.ret == 0, out
    outcomes = result.parseoutcomes()
    assert outcomes["skipped"] >= 5 and "passed" not in outcomes and "failed" not in outcomes
    assert "no chat template" in out and "chat_template=" in out
