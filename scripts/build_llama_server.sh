#!/usr/bin/env bash
# Build llama.cpp's llama-server from the sources in the installed llama-cpp-python's sdist (vendor/llama.cpp),
# portably (the same flags as llama-cpp-python: a native build crashes in the AMX kernel on some CPUs).
# Cached: one build per llama-cpp-python version, outside the checkout, so a fresh clone reuses it.
# Usage: build_llama_server.sh PYTHON  -> prints the binary's path on its last line.
set -euo pipefail
PY="${1:-python3}"
VERSION="$("$PY" -c 'from importlib.metadata import version; print(version("llama-cpp-python"))')"
CACHE="${FIRSTTOKEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/firsttoken}/llama-server-$VERSION"
BIN="$CACHE/llama-server"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
CMAKE="$(command -v cmake || true)"
if [ -z "$CMAKE" ]; then  # no system cmake: the one llama-cpp-python's own build uses, from the registry
    "$PY" -m pip install --quiet --disable-pip-version-check cmake >&2
    CMAKE="$(dirname "$PY")/cmake"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "building llama-server $VERSION (once, about 6 minutes on 2 cores) into $CACHE" >&2
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    "llama-cpp-python==$VERSION" -d "$WORK" >&2
tar xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
SRC="$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)"
"$CMAKE" -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
    -DBUILD_SHARED_LIBS=OFF >"$WORK/configure.log" 2>&1 || { tail -20 "$WORK/configure.log" >&2; exit 1; }
"$CMAKE" --build "$WORK/build" --target llama-server -j "$(nproc)" >"$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log" >&2; exit 1; }
mkdir -p "$CACHE"
cp "$WORK/build/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
echo "$BIN"
