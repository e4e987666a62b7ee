"""ort-gptq's LM head (lm_runtimes.ort.gptq_head): the builder options it becomes, and (e2e)
the head type read back from a built graph."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.ort_fixtures import tiny_llama

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("head, precision, excluded, last", [
    ("fp32", "int4", {"/lm_head/MatMul", "/model/embed_tokens/Gather"}, None),
    ("int8", "int4", {"/model/embed_tokens/Gather"}, "int8"),
    ("int4", "int8", {"/model/embed_tokens/Gather"}, "int4"),
    ("int4", "int4", set(), None),     # the builder default: one shared int4 table
])
def test_gptq_head_reaches_the_builder_as_asked(head, precision, excluded, last):
    """The options ort-gptq passes are parsed by the builder's own QuantConfig into the head
    and lookup overrides that lm_runtimes.ort.gptq_head names."""
    qc = pytest.importorskip("onnxruntime_genai.models.quantization.quant_config")
    from stages.methods.ort_build import extra_options

    knobs = {"block_size": 32, "accuracy_level": 4, "quantize_head": True, "gptq_head": head}
    kv = dict(o.split("=", 1) for o in extra_options(knobs, precision, gptq=True))
    kv["nodes_to_exclude"] = [n for n in kv.get("nodes_to_exclude", "").split(",") if n]
    cfg = qc.QuantConfig.from_extra_options(kv, precision, "cpu")
    got_excluded = {o.match["name"] for o in cfg.weights.overrides if o.exclude}
    got_last = [o.type for o in cfg.weights.overrides if o.match.get("preset") == "last_matmul"]
    assert got_excluded == excluded and got_last == ([last] if last else [])
    rtn = extra_options({**knobs, "gptq_head": "int8"}, precision, gptq=False)   # RTN ignores it
    assert rtn == extra_options(knobs, precision, gptq=False)


@pytest.mark.e2e
def test_gptq_head_is_built_as_asked_and_read_back_from_the_graph(tmp_path):
    pytest.importorskip("transformers")
    from stages.methods.ort_build import head_type, run_builder

    tok_dir = ROOT / "models" / "llm" / "base"
    if not (tok_dir / "tokenizer.json").is_file():
        pytest.skip("models/llm/base not checked out (dvc pull / dvc repro lm_export)")
    tiny_llama(tmp_path / "hf", tok_dir)
    knobs = {"block_size": 32, "accuracy_level": 4, "quantize_head": True}
    want = {"fp32": "float32", "int8": "int8 block 32", "int4": "int4 block 32 + shared lookup"}
    for head, expected in want.items():
        run_builder(tmp_path / "hf", tmp_path / head, "int4", {**knobs, "gptq_head": head}, gptq=True)
        assert head_type(tmp_path / head) == expected
