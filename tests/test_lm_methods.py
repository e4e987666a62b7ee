"""Pruning (unstructured, 2:4), distillation / recovery fine-tuning and the chain params, on
tiny Llama models: the properties each method promises, and clear errors for bad chains."""
from __future__ import annotations

import copy

import pytest
import torch
import yaml

from stages.core.errors import PipelineError
from stages.methods import distill as D, prune as PR
from stages.schema import params as P
from tests.test_lm_models import CALIB, one_thread, tiny  # noqa: F401 (fixtures)


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


def chains_params(tmp_path, chains: dict, **over):
    raw = yaml.safe_load(open("params.yaml"))
    raw["chains"] = chains
    for key, value in over.items():
        section, _, knob = key.partition(".")
        raw[section][knob] = value
    return P.validate(raw)


@pytest.mark.parametrize("chains, over, message", [
    ({"x": {"input": "base", "method": "awqq"}}, {}, "chains.x.method"),
    ({"gptq4": {"input": "base", "method": "gptq"}, "gptq4+prune": {"input": "gptq4", "method": "prune"}},
     {}, "cannot prune after gptq"),
    ({"a": {"input": "b", "method": "prune"}, "b": {"input": "a", "method": "prune"}}, {}, "cycle"),
    ({"a": {"input": "nowhere", "method": "prune"}}, {}, "neither base nor a node"),
    ({"gptq": {"input": "base", "method": "prune"}}, {}, "not one of"),
    ({"a": {"input": "base", "method": "distill", "pattern": "2:4"}}, {}, "'pattern' is a prune knob"),
    ({"a": {"input": "base", "method": "prune"}}, {"prune.sparsity": 1.0}, "prune.sparsity"),
    ({"a": {"input": "base", "method": "prune", "patern": "2:4"}}, {}, "unknown key 'chains.a.patern'"),
    ({"a": {"input": "base", "method": "distill"}}, {"distill.device": "gpu"}, "distill.device"),
])
def test_bad_chains_are_one_line_errors(tmp_path, chains, over, message):
    with pytest.raises(PipelineError) as exc:
        chains_params(tmp_path, chains, **over)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_the_chain_name_is_its_methods_in_order(tmp_path):
    from stages.schema.params_methods import steps

    p = chains_params(tmp_path, {"p": {"input": "base", "method": "prune"},
                                 "p+d": {"input": "p", "method": "distill"},
                                 "p+d+g": {"input": "p+d", "method": "gptq", "bits": 8}})
    assert "+".join(steps(p.chains, "p+d+g")) == "prune+distill+gptq" and p.chain_bits() == [8]


def test_lm_chain_runs_prune_then_distill_then_gptq_on_a_tiny_model(tiny, tmp_path):
    """The stage itself: each node reads its input node's folder, writes its own, and its
    metrics carry the chain's name, sparsity, sizes and cost; a packed input cannot be pruned."""
    import json

    from stages.entry import lm_chain
    from tests.det_fixtures import write_params
    from tests.test_lm_models import write_jsonl

    chains = {"prune": {"input": "base", "method": "prune"},
              "prune+distill": {"input": "prune", "method": "distill"},
              "prune+distill+gptq": {"input": "prune+distill", "method": "gptq", "bits": 4},
              "distill": {"input": "base", "method": "distill"},
              "bad": {"input": "prune+distill", "method": "prune"}}
    params = write_params(tmp_path / "params.yaml", chains=chains,
                          distill=dict(steps=4, batch_size=2, seq_len=16, lr=1e-3, temperature=2.0,
                                       alpha=0.5, drop_every=2, threads=1, device="cpu"),
                          **{"quant.calib_size": 8, "quant.calib_seq_len": 16, "quant.group_size": 32})
    calib = write_jsonl(tmp_path / "calib.jsonl", CALIB)
    models = {"base": tiny}

    def run(node):
        out, metrics = tmp_path / node, tmp_path / f"{node}.json"
        lm_chain.main(["--node", node, "--input", str(models[chains[node]["input"]]), "--teacher", str(tiny),
                       "--calib", str(calib), "--out", str(out), "--metrics", str(metrics),
                       "--params", str(params)])
        models[node] = out
        return json.loads(metrics.read_text())

    pruned = run("prune")
    assert (pruned["method"], pruned["sparsity"], pruned["bits"]) == ("prune", 0.5, 32)
    assert pruned["size_sparse_mb"] < pruned["size_mb"] and pruned["compress_energy"]["joules"] > 0
    tuned = run("prune+distill")
    assert tuned["method"] == "prune+distill" and tuned["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert tuned["layers"] == 2 and len(tuned["losses"]) == 4   # recovery keeps every layer
    quant = run("prune+distill+gptq")
    assert (quant["method"], quant["bits"]) == ("prune+distill+gptq", 4)
    assert (tmp_path / "prune+distill+gptq" / "int4" / "config.json").is_file()
    small = run("distill")   # from base: the student drops every 2nd layer, and is dense
    assert (small["layers"], small["sparsity"], small["method"]) == (1, 0.0, "distill")
    assert (small["device"], small["tokens_trained"]) == ("cpu", 4 * 2 * 16)
    models["prune+distill"] = tmp_path / "prune+distill+gptq" / "int4"   # a packed input
    with pytest.raises(PipelineError, match="is quantized"):
        run("bad")
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.json").exists()


def test_distill_on_cuda_without_a_gpu_is_a_one_line_error_before_any_work(tiny, tmp_path):
    import torch

    from stages.entry import lm_chain
    from tests.det_fixtures import write_params
    from tests.test_lm_models import write_jsonl

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    params = write_params(tmp_path / "params.yaml", chains={"distill": {"input": "base", "method": "distill"}},
                          **{"distill.device": "cuda"})
    out = tmp_path / "distill"
    with pytest.raises(PipelineError, match="^distill.device=cuda but no CUDA device is available$"):
        lm_chain.main(["--node", "distill", "--input", str(tiny), "--teacher", str(tiny), "--calib",
                       str(write_jsonl(tmp_path / "calib.jsonl", CALIB)), "--out", str(out),
                       "--metrics", str(tmp_path / "m.json"), "--params", str(params)])
    assert not out.exists()
