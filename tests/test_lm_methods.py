"""Pruning (unstructured, 2:4), distillation / recovery fine-tuning and compression chains (the
`compress` table, stages/schema/lm_tables.py, run by lm_compress), on tiny Llama models: the
properties each method promises, and one-line errors for bad chains."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from ruamel.yaml import YAML

from stages.core.errors import PipelineError
from stages.entry import check_params
from stages.methods import distill as D, lm as lm_methods, prune as PR
from stages.models import lm_record
from stages.schema import lm_tables as T
from tests.test_lm_models import CALIB, PARAMS, compress, one_thread, tiny, write_params  # noqa: F401 (fixtures)


def llama(intermediate: int = 128, layers: int = 4, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=intermediate,
                                        num_hidden_layers=layers, num_attention_heads=4,
                                        num_key_value_heads=2, max_position_embeddings=128)).eval()


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.7])
def test_unstructured_zeroes_the_smallest_magnitudes_of_every_layer(sparsity):
    model = llama()
    before = {n: m.weight.detach().clone() for n, m in PR.linears(model).items()}
    emb = model.model.embed_tokens.weight.detach().clone()
    assert PR.prune(model, sparsity, "unstructured") == pytest.approx(sparsity, abs=1e-3)
    for name, m in PR.linears(model).items():
        w, orig = m.weight.detach(), before[name]
        zero = w == 0
        assert zero.float().mean() == pytest.approx(sparsity, abs=1 / w.numel() + 1e-6), name
        assert orig[zero].abs().max() <= orig[~zero].abs().min()      # magnitude order
        assert torch.equal(w[~zero], orig[~zero])                      # the kept weights unchanged
        assert not hasattr(m, "weight_orig")                           # the mask is permanent
    assert torch.equal(model.model.embed_tokens.weight, emb)           # embedding stays dense


def test_2_4_keeps_the_two_largest_of_every_four_inputs():
    model = llama()
    before = {n: m.weight.detach().clone() for n, m in PR.linears(model).items()}
    assert PR.prune(model, 0.0, "2:4") == pytest.approx(0.5)
    for name, m in PR.linears(model).items():
        w = m.weight.detach().reshape(m.out_features, -1, 4)
        orig = before[name].reshape(w.shape).abs()
        assert ((w != 0).sum(-1) == 2).all(), name
        kept = torch.where(w != 0, orig, torch.inf).min(-1).values
        dropped = torch.where(w == 0, orig, -torch.inf).max(-1).values
        assert (dropped <= kept).all(), name


def test_2_4_on_a_width_not_divisible_by_4_is_a_one_line_error():
    with pytest.raises(PipelineError, match=r"divisible by 4; .*down_proj has 130") as exc:
        PR.prune(llama(intermediate=130), 0.5, "2:4")
    assert "\n" not in str(exc.value)


def test_sparse_size_shrinks_with_sparsity_and_dense_size_does_not():
    model = llama()
    dense = PR.sparse_bytes(model)
    PR.prune(model, 0.5, "unstructured")
    half = PR.sparse_bytes(model)
    lin = sum(m.weight.numel() for m in PR.linears(model).values())
    assert half == pytest.approx(dense - lin * 4 * 0.5, rel=0.01)      # half the values gone
    assert sum(p.numel() for p in model.parameters()) * 4 > half       # dense fp32 is larger


def test_drop_layers_keeps_every_other_layer_and_runs():
    model = llama(layers=4)
    kept = [model.model.layers[i].mlp.up_proj.weight.clone() for i in (0, 2)]
    student = D.drop_layers(copy.deepcopy(model), 2)
    assert student.config.num_hidden_layers == 2 and len(student.model.layers) == 2
    assert all(torch.equal(student.model.layers[i].mlp.up_proj.weight, kept[i]) for i in range(2))
    out = student.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)


def test_distillation_lowers_the_loss_keeps_zeros_and_is_seeded(tiny, one_thread):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    teacher = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    data = D.windows(tok, CALIB, 16)
    cfg = dict(steps=30, batch_size=4, lr=3e-3, temperature=2.0, alpha=0.5)
    runs = []
    for _ in range(2):
        student = copy.deepcopy(teacher)
        PR.prune(student, 0.5, "unstructured")
        masks = PR.masks(student)
        runs.append((D.train(student, teacher, data, cfg, seed=0, masks=masks), student))
    (losses, student), (again, _) = runs
    assert losses == again                                   # seeded: same batches, same steps
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5  # it learns
    assert PR.sparsity(student) == pytest.approx(0.5, abs=1e-3)   # zeros survive the updates


M = PARAMS["quant"]["models"][0]   # a model of the repository's params.yaml, in its width sweep
SWEEP = T.sweep_node(M, PARAMS["quant"]["methods"][0], PARAMS["quant"]["bits"][0])


def check_chains(tmp_path, chains: dict, variants: dict | None = None, **methods):
    """check_params (the first stage: the whole file, then every plugin and knob) on the
    repository's params with `chains` as the compress table and `methods` knob overrides."""
    raw = copy.deepcopy(PARAMS)
    raw["compress"], raw["variants"] = chains, variants or {}
    raw["energy"] = {**raw["energy"], "method": "estimate"}   # no NVML/RAPL probe on this machine
    for key, value in methods.items():
        method, _, knob = key.partition("__")
        raw["methods"].setdefault(method, {})[knob] = value
    path = tmp_path / "params.yaml"
    with path.open("w") as f:
        YAML(typ="safe", pure=True).dump(raw, f)
    check_params.main(["--params", str(path), "--out", str(tmp_path / "checked")])
    return T.tables(raw)


def node(input: str, method: str, **knobs) -> dict:
    return {"model": M, "input": input, "method": method, **knobs}


@pytest.mark.parametrize("chains, over, message", [
    ({"x": node(M, "awqq")}, {},   # the message lists every registered method, a plugin's too
     f"unknown LM compression method 'awqq' (known: {', '.join(lm_methods.names())})"),
    ({"q": node(M, "gptq", bits=4), "q+p": node("q", "prune")}, {},
     "compress.q+p: its input chain is quantized by 'q'; a quantizer ends a chain"),
    ({"a": node("b", "prune"), "b": node("a", "prune")}, {}, "(a cycle)"),
    ({M: node(M, "prune")}, {}, f"compress: '{M}' is also a model name"),
    ({SWEEP: node(M, "prune")}, {}, f"compress: '{SWEEP}' is a quant sweep node"),
    ({"a": {**node(M, "prune"), "model": "ghost"}}, {}, f"compress.a.model: 'ghost', but its input chain starts at '{M}'"),
    ({"A b": node(M, "prune")}, {}, "compress: key 'A b': lowercase letters, digits"),
    ({"a": node(M, "distill", pattern="2:4")}, {}, "compress.a: unknown knob 'pattern'"),
    ({"a": node(M, "prune", patern="2:4")}, {}, "compress.a: unknown knob 'patern' (did you mean 'pattern'?)"),
    ({"a": node(M, "distill")}, {"distill__device": "gpu"}, "methods.distill: device: Input should be 'cpu' or 'cuda'"),
])
def test_bad_chains_are_one_line_errors(tmp_path, chains, over, message):
    with pytest.raises(PipelineError) as exc:
        check_chains(tmp_path, chains, **over)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "checked").exists()


def test_the_chain_is_its_methods_in_order_with_their_knobs(tmp_path):
    t = check_chains(tmp_path, {"p": node(M, "prune"), "p+d": node("p", "distill"),
                                "p+d+g": node("p+d", "gptq", bits=8)},
                     {"v": {"node": "p+d+g", "runtime": "pytorch"}})
    assert (tmp_path / "checked").is_file()
    assert T.chain(t, "p+d+g") == ["p", "p+d", "p+d+g"] and T.model_of(t, "p+d+g") == M
    assert [t.compress[n].method for n in T.chain(t, "p+d+g")] == ["prune", "distill", "gptq"]
    knobs = T.node_knobs(t, "p+d+g")
    assert knobs["bits"] == 8 and knobs["group_size"] == PARAMS["methods"]["gptq"]["group_size"]
    record = {"model": M, "chain": [{"method": t.compress[n].method, "knobs": T.node_knobs(t, n)}
                                    for n in T.chain(t, "p+d+g")], "runtime": "pytorch", "knobs": {}}
    assert lm_record.name(record) == f"{M} · prune+distill+gptq-int8 · pytorch"


CHAINS = {"tiny-prune": {"model": "tiny", "input": "tiny", "method": "prune"},
          "tiny-prune+distill": {"model": "tiny", "input": "tiny-prune", "method": "distill", "drop_every": 0},
          "tiny-prune+distill+gptq": {"model": "tiny", "input": "tiny-prune+distill", "method": "gptq", "bits": 4},
          "tiny-distill": {"model": "tiny", "input": "tiny", "method": "distill"},
          "bad": {"model": "tiny", "input": "tiny-prune+distill+gptq", "method": "prune"}}
METHODS = {"distill": dict(steps=4, batch_size=2, seq_len=16, lr=1e-3, temperature=2.0, alpha=0.5, threads=1),
           "gptq": {"calib_size": 8, "calib_seq_len": 16, "group_size": 32, "threads": 1}}


def test_lm_compress_runs_prune_then_distill_then_gptq_on_a_tiny_model(tiny, tmp_path):
    """The stage itself: each node reads its input node's folder, writes its own with the
    record of its chain, and its metrics carry the step, sizes and cost; a packed input cannot
    be pruned."""
    from transformers import AutoModelForCausalLM

    folders = {"tiny": tiny}

    def run(name):
        spec = CHAINS[name]
        folders[name], metrics = compress(name, spec["method"], folders[spec["input"]], tmp_path, teacher=tiny,
                                          compress=CHAINS, methods=METHODS)
        return metrics

    def sparsity(name):
        return PR.sparsity(AutoModelForCausalLM.from_pretrained(folders[name], dtype=torch.float32))

    pruned = run("tiny-prune")
    assert (pruned["step"]["method"], pruned["step"]["sparsity"]) == ("prune", 0.5)
    assert pruned["step"]["knobs"] == {"sparsity": 0.5, "pattern": "unstructured"}   # params defaults
    assert pruned["size_mb"] > 0 and pruned["compress_energy"]["joules"] > 0 and pruned["compress_time_s"] > 0
    tuned = run("tiny-prune+distill")
    assert [s["method"] for s in tuned["record"]["chain"]] == ["prune", "distill"]
    assert tuned["step"]["layers"] == 2 and len(tuned["step"]["losses"]) == 4   # recovery keeps every layer
    assert sparsity("tiny-prune+distill") == pytest.approx(0.5, abs=1e-3)       # and every zero
    quant = run("tiny-prune+distill+gptq")
    assert lm_record.name(quant["record"]) == "tiny · prune+distill+gptq-int4"
    assert json.loads((folders["tiny-prune+distill+gptq"] / "record.json").read_text()) == quant["record"]
    qc = json.loads((folders["tiny-prune+distill+gptq"] / "config.json").read_text())["quantization_config"]
    assert (qc["bits"], qc["group_size"], quant["step"]["bits"]) == (4, 32, 4)
    small = run("tiny-distill")   # from base: the student drops every 2nd layer, and is dense
    assert small["step"]["layers"] == 1 and small["step"]["knobs"]["device"] == "cpu"
    assert sparsity("tiny-distill") == 0.0
    assert json.loads((folders["tiny-distill"] / "config.json").read_text())["num_hidden_layers"] == 1
    with pytest.raises(PipelineError, match="already quantized; a quantizer ends a chain"):
        run("bad")
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.json").exists()


def test_distill_on_cuda_without_a_gpu_is_a_one_line_error_before_any_work(tiny, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    chains = {"d": {"model": "tiny", "input": "tiny", "method": "distill", "device": "cuda"}}
    with pytest.raises(PipelineError, match=r"^compress.d.device: cuda, but this machine has no CUDA device"):
        compress("d", "distill", tiny, tmp_path, compress=chains, methods=METHODS)
    assert not (tmp_path / "d").exists()
