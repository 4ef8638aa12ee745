#!/usr/bin/env bash
# The long fuzz run of the API (issue 35): tests/test_serve_fuzz.py with many examples per operation
# (schemathesis from /openapi.json, valid and invalid, plus hypothesis raw bodies); every request must
# get an answer under 500 and leave the server healthy. Writes bench/results/serve_fuzz.json.
#   bash bench/serve_fuzz.sh [EXAMPLES_PER_TEST]   (default 1500: over 10,000 requests)
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-1500}
started=$(date +%s)
SELFPOWERED_FUZZ_EXAMPLES=$examples SELFPOWERED_FUZZ_REPORT=bench/results/serve_fuzz.counts.json \
  .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_serve_fuzz.py
python3 - "$started" <<'PY'
import json, sys, time, platform
counts = json.load(open("bench/results/serve_fuzz.counts.json"))
counts.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), seconds=int(time.time()) - int(sys.argv[1]),
              machine=f"{platform.machine()}, 2 CPU cores")
json.dump(counts, open("bench/results/serve_fuzz.json", "w"), indent=1)
print(counts)
PY
rm -f bench/results/serve_fuzz.counts.json
