"""GGUF files for llama.cpp, made with llama.cpp's own tools: its HF converter
(convert_hf_to_gguf.py from the llama-cpp-python sdist, which setup.sh keeps under
<venv>/share/llama.cpp) and its quantizer (llama_model_quantize in libllama).

f32 / f16: the converter on the base folder. q8_0 / q4_0 / q4_k_m: the quantizer on an f32
conversion (no intermediate f16 rounding). llama.cpp's quantizer also quantizes the tied
embedding / LM head table (lm_build_gguf records its type: Q8_0 for all three on SmolLM2), and
q4_k_m falls back to Q5_0 for matrices whose rows are not a multiple of 256 (576-wide here).
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from stages.core.errors import PipelineError, log
from stages.runtimes.llamacpp_lm import require

CONVERTED = ("f32", "f16")                       # --outtype of the converter
FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
          "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}   # llama_model_quantize file types
BITS = {"f32": 32, "f16": 16, "q8_0": 8, "q4_0": 4, "q4_k_m": 4, "packaged": 4}


def converter() -> Path:
    """llama.cpp's convert_hf_to_gguf.py as setup.sh installed it beside the venv's packages."""
    path = Path(sys.prefix) / "share" / "llama.cpp" / "convert_hf_to_gguf.py"
    if not path.is_file():
        raise PipelineError(f"llama.cpp's converter is missing ({path}); run `bash setup.sh`, which "
                            f"extracts it from the llama-cpp-python sdist")
    return path


def convert(base: Path, out: Path, outtype: str) -> None:
    """The converter on an HF folder; its last log line is the error if it fails."""
    cmd = [sys.executable, str(converter()), str(base), "--outtype", outtype, "--outfile", str(out)]
    log.info("running convert_hf_to_gguf.py %s --outtype %s", base, outtype)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PipelineError(f"convert_hf_to_gguf.py failed on {base} ({outtype}): {tail[0]}")


def quantize(src: Path, out: Path, kind: str, threads: int) -> None:
    llama_cpp = require()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread = getattr(llama_cpp, FTYPES[kind]), threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params))
    if rc != 0 or not out.is_file():
        raise PipelineError(f"llama_model_quantize failed ({kind}, return code {rc}) on {src}")


def build(kind: str, base: Path, out: Path, threads: int, packaged: Path | None = None) -> None:
    """Write the GGUF of one variant to `out` (a file path)."""
    if kind == "packaged":
        if packaged is None:
            raise PipelineError("the packaged GGUF exists only with llm.source=package")
        out.write_bytes(packaged.read_bytes())
    elif kind in CONVERTED:
        convert(base, out, kind)
    elif kind in FTYPES:
        with tempfile.TemporaryDirectory(prefix="gguf-f32-") as tmp:
            f32 = Path(tmp) / "f32.gguf"
            convert(base, f32, "f32")
            quantize(f32, out, kind, threads)
    else:
        raise PipelineError(f"unknown GGUF variant {kind!r} (known: {', '.join(BITS)})")
