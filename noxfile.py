"""Developer tasks. `nox -s tests` runs the tests; `nox -s demo` benchmarks the embedded model.

pip keeps the llama-cpp-python wheel it compiles (10-16 minutes on 2 cores) in its cache, so
only the first session on a machine pays for the build.
"""

import os
import platform
import shutil

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

# llama.cpp's default -march=native build crashes on virtual machines whose CPU advertises AMX
# tiles the kernel does not enable (SIGSEGV in ggml_backend_amx_mul_mat). AVX2 runs on every
# x86-64 CPU of the last decade; the decode loop is memory-bound, so little speed is lost.
BUILD_ENV = (
    {
        "CMAKE_ARGS": "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON "
        "-DGGML_F16C=ON -DGGML_BMI2=ON"
    }
    if platform.machine().lower() in ("x86_64", "amd64")
    else {}
)

# The hf backend's tests run on the CPU. Pinned here, not in the package metadata: users pick
# their own torch build (CUDA, ROCm, CPU); an unpinned install in CI could pull a multi-GB CUDA
# build, while this one is the CPU wheel.
TEST_TORCH = "torch==2.13.0"


def _ensure_chromium(session: nox.Session) -> None:
    """The HTML report tests open pages in headless Chromium. Install Debian's package where
    we can (root with apt); elsewhere those tests skip and say why."""
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    if not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        session.warn("chromium not found and not installable here: browser tests will skip")
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run(
        "apt-get", "install", "-y", "-qq", "chromium",
        external=True, env=env,
    )  # fmt: skip


@nox.session
def tests(session: nox.Session) -> None:
    """The plugin's own tests, against real llama.cpp, transformers, an OpenAI-compatible
    server and a Bedrock wire-format server on loopback, and reports in headless Chromium."""
    _ensure_chromium(session)
    session.install(TEST_TORCH)
    session.install(".[test]", env=BUILD_ENV)
    session.run("pytest", *(session.posargs or ["tests"]))


@nox.session
def demo(session: nox.Session) -> None:
    """The latency suite on the embedded model, gated against a reference: the same model on one
    CPU thread, run interleaved in the same job (relative mode). The table, the JSON results,
    the HTML report and the Markdown summary then show what the gate is for: a verdict per
    benchmark with its interval (reported, never failing the demo). Extra arguments go to
    pytest (``nox -s demo -- -k decode``)."""
    session.install(".[llamacpp]", env=BUILD_ENV)
    session.run(
        "pytest",
        "suites/latency",
        "--llm=llamacpp:gemma3-270m",
        "--llm-compare-to=llamacpp:gemma3-270m?n_threads=1",
        # 16 interleaved runs a side: about four minutes on 2 cores, enough for a verdict on a
        # one-thread reference even when a noisy neighbour flips a pair or two (10 runs left
        # one INCONCLUSIVE here; sequential looks up to 40 runs took 12 minutes).
        "--llm-runs=16",
        # A demo reports verdicts but never fails on them: on a busy machine two threads can
        # lose to one. A CI job keeps the default, and a REGRESSION fails its build.
        "--llm-fail-on=none",
        "--llm-json=llmperf-results.json",
        "--llm-html=llmperf-report.html",
        "--llm-markdown=llmperf-summary.md",
        *session.posargs,
    )


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    # Without the hf extra: mypy skips torch and transformers (see pyproject.toml), and
    # accelerate would otherwise pull an unpinned torch.
    session.install(".[llamacpp,openai,bedrock]", "mypy>=1.10", "types-PyYAML", env=BUILD_ENV)
    session.run("mypy")
