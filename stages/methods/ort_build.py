"""ONNX Runtime GenAI model builder (`onnxruntime_genai.models.builder`) on a local HF folder:
fp32, int8/int4 round-to-nearest MatMulNBits, or a GPTQ checkpoint repacked by the builder's
GPTQ loader (after converting GPTQModel's gptq_v2 zero points to v1, stages/methods/gptq_v1).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from stages.core.errors import PipelineError, log
from stages.methods import gptq_v1

EMBEDDING = ("/lm_head/MatMul", "/model/embed_tokens/Gather")   # the tied 49152 x 576 table


def extra_options(knobs: dict, precision: str, gptq: bool) -> list[str]:
    """Builder --extra_options of the params' knobs (block size, accuracy level, head)."""
    opts = [f"block_size={knobs['block_size']}", f"accuracy_level={knobs['accuracy_level']}"]
    head = knobs["gptq_head"] if gptq else ("builder" if knobs["quantize_head"] else "fp32")
    if precision == "fp32" or head == "builder" or (head == "int4" and precision == "int4"):
        return opts   # the builder default: a GPTQ int4 body gets one shared RTN int4 table
    if head == "fp32":   # keep the tied embedding / LM head in float32, one shared table
        return opts + ["shared_embeddings=true", "nodes_to_exclude=" + ",".join(EMBEDDING)]
    # an RTN int8 (or int4) MatMulNBits head, block_size columns per scale; the lookup keeps a
    # float32 table (GatherBlockQuantized is 4-bit only; one row of it is read per token)
    return opts + ["shared_embeddings=false", f"matmul_mixed_precision=last_matmul:{head}",
                   "nodes_to_exclude=" + EMBEDDING[1]]


def run_builder(src: Path, out: Path, precision: str, knobs: dict, gptq: bool = False) -> None:
    """Build into `out` (created); the builder's last log line is the error if it fails."""
    with tempfile.TemporaryDirectory(prefix="ort-cache-") as cache:
        # the builder's command line, with its transformers-5 Gemma 3 fix (stages/methods/ort_builder.py)
        cmd = [sys.executable, "-m", "stages.methods.ort_builder", "-i", str(src),
               "-o", str(out), "-p", precision, "-e", "cpu", "-c", cache,
               "--extra_options", *extra_options(knobs, precision, gptq)]
        log.info("running %s", " ".join(cmd[2:]))
        # GIT_DIR: the builder stamps `git rev-parse HEAD` run beside its package into the graph;
        # with the venv inside this repo that is the project's own commit (a new hash per commit)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "GIT_DIR": os.devnull}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not (out / "model.onnx").is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PipelineError(f"onnxruntime-genai builder failed for {src} ({precision}): {tail[0]}")
    made = json.loads((out / "genai_config.json").read_text())["model"]["type"]
    expected = json.loads((src / "config.json").read_text())["model_type"]
    if made != expected:
        raise PipelineError(f"builder made a {made!r} model from a {expected!r} checkpoint ({src})")


def build_gptq(src: Path, out: Path, bits: int, knobs: dict) -> None:
    """A GPTQModel (gptq_v2) folder at its width: repacked to v1 (stages/methods/gptq_v1), then
    the builder's GPTQ loader (int8 for 8 bits; 4- and 2-bit codes go through its int4 path)."""
    with tempfile.TemporaryDirectory(prefix="gptq-v1-") as tmp:
        gptq_v1.to_v1(src, Path(tmp) / "model")
        run_builder(Path(tmp) / "model", out, "int8" if bits == 8 else "int4", knobs, gptq=True)


def head_type(folder: Path) -> str:
    """What the built graph's LM head is, read from it (not from the knobs): `float32`, or
    `int<bits> block <n>` for a MatMulNBits head, `+ shared lookup` when the embedding Gather
    reads the same quantized table."""
    import onnx

    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    head = next((n for n in graph.node if n.name.startswith("/lm_head/MatMul")), None)
    if head is None:
        raise PipelineError(f"{folder}/model.onnx has no /lm_head/MatMul node")
    if head.op_type != "MatMulNBits":
        return "float32"
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in head.attribute}
    shared = any(head.input[1] in n.input for n in graph.node if n is not head)   # the lookup's too
    return f"int{attrs['bits']} block {attrs['block_size']}" + (" + shared lookup" if shared else "")
