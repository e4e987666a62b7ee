"""The llama.cpp runtime: params errors, variant naming, GGUF header arithmetic (bytes read per
token, tensor types), missing packages, and a tiny random Llama converted by llama.cpp's own
converter and scored through llama.cpp equals its PyTorch scores (a broken conversion fails)."""
from __future__ import annotations

import builtins
import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages.core.errors import PipelineError
from stages.entry.lm_eval_gguf import describe
from stages.schema import params as P

ROOT = Path(__file__).resolve().parents[1]
GOOD = yaml.safe_load((ROOT / "params.yaml").read_text())


def llamacpp(**knobs) -> dict:
    raw = copy.deepcopy(GOOD)
    raw["lm_runtimes"]["llamacpp"].update(knobs)
    return raw


@pytest.mark.parametrize("knobs, message", [
    ({"variants": ["q3_k"]}, "lm_runtimes.llamacpp.variants: Input should be 'f32', 'f16', 'q8_0', 'q4_0', 'q4_k_m' or 'packaged', got 'q3_k'"),
    ({"variants": ["q4_0", "q4_0"]}, "lists a variant twice"),
    ({"threads": 0}, "lm_runtimes.llamacpp.threads: Input should be greater than or equal to 1"),
    ({"thread": 2}, "thread"),
])
def test_bad_llamacpp_params_are_one_line(knobs, message):
    with pytest.raises(PipelineError) as exc:
        P.validate(llamacpp(**knobs))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_a_gguf_type_in_the_ort_list_points_to_the_llamacpp_list():
    raw = copy.deepcopy(GOOD)
    raw["lm_runtimes"]["variants"] = ["llamacpp-q4_0"]
    with pytest.raises(PipelineError, match="lm_runtimes.llamacpp.variants"):
        P.validate(raw)


def test_variant_names_map_to_runtime_method_bits():
    assert describe("f16") == {"runtime": "llama.cpp", "method": "none", "bits": 16}
    assert describe("q4_k_m") == {"runtime": "llama.cpp", "method": "gguf-q4_k_m", "bits": 4}
    assert describe("packaged") == {"runtime": "llama.cpp", "method": "gguf-q4_1", "bits": 4}
    with pytest.raises(PipelineError, match="unknown GGUF variant 'q5_0'"):
        describe("q5_0")


def write_gguf(path: Path, tied: bool) -> None:
    """A header-only-valid GGUF: a 10x4 embedding (+ an 10x4 output when untied) and a 4x4 layer."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(256)
    w.add_token_list([f"t{i}".encode() for i in range(10)])
    w.add_tensor("token_embd.weight", np.ones((10, 4), dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.ones((4, 4), dtype=np.float16))
    if not tied:
        w.add_tensor("output.weight", np.ones((10, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_bytes_per_token_reads_a_tied_table_whole_and_an_untied_one_by_row(tmp_path):
    from stages.runtimes import llamacpp_lm as R

    write_gguf(tmp_path / "tied.gguf", tied=True)
    write_gguf(tmp_path / "untied.gguf", tied=False)
    assert R.weight_bytes_per_token(tmp_path / "tied.gguf") == 10 * 4 * 4 + 4 * 4 * 2
    assert R.weight_bytes_per_token(tmp_path / "untied.gguf") == 4 * 4 + 4 * 4 * 2 + 10 * 4 * 4
    assert R.type_counts(tmp_path / "untied.gguf") == {"F16": 1, "F32": 2}
    assert R.context_length(tmp_path / "tied.gguf") == 256 and R.vocab_size(tmp_path / "tied.gguf") == 10


def test_missing_llama_cpp_names_the_package_and_setup(monkeypatch):
    from stages.runtimes import llamacpp_lm as R

    real = builtins.__import__

    def no_llama(name, *a, **kw):
        if name == "llama_cpp":
            raise ImportError("No module named 'llama_cpp'")
        return real(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_llama)
    with pytest.raises(PipelineError) as exc:
        R.require()
    assert "'llama-cpp-python'" in str(exc.value) and "bash setup.sh" in str(exc.value)


def test_packaged_variant_needs_the_package_source(tmp_path):
    from stages.entry import lm_build_gguf

    raw = copy.deepcopy(GOOD)
    raw["llm"]["source"] = "hub"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(PipelineError, match="'packaged' needs llm.source=package"):
        lm_build_gguf.main(["--variant", "packaged", "--base", str(tmp_path), "--out", str(tmp_path / "x.gguf"),
                            "--metrics", str(tmp_path / "m.json"), "--params", str(tmp_path / "params.yaml")])
    assert not (tmp_path / "x.gguf").exists() and not (tmp_path / "m.json").exists()


def test_tiny_llama_scores_the_same_in_llama_cpp_and_pytorch(tiny_hf, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("llama_cpp")
    import transformers

    from stages.methods import gguf_build
    from stages.runtimes import llamacpp_lm as R
    from stages.tasks import lambada as S

    gguf_build.build("f32", tiny_hf, tmp_path / "f32.gguf", 1)
    gguf_build.build("q8_0", tiny_hf, tmp_path / "q8_0.gguf", 1)
    assert R.type_counts(tmp_path / "f32.gguf") == {"F32": len(R.tensors(tmp_path / "f32.gguf"))}
    q8 = R.tensors(tmp_path / "q8_0.gguf")
    assert q8["token_embd.weight"][0] == "Q8_0" and q8["blk.0.ffn_down.weight"][0] == "Q8_0"
    rng = np.random.default_rng(0)
    reqs = [[int(t) for t in rng.integers(3, 49152, n)] for n in (7, 19, 40)]
    reqs = [(ids, 2, ids[-1:] + [int(rng.integers(3, 49152))]) for ids in reqs]
    model = transformers.LlamaForCausalLM.from_pretrained(tiny_hf).eval()
    with torch.inference_mode():
        want = [S.score_continuation(model(torch.tensor([ids])).logits[0, len(ids) - n:], c, 5)
                for ids, n, c in reqs]
    for name, tol in (("f32", 1e-3), ("q8_0", 0.05)):
        llm = R.load(tmp_path / f"{name}.gguf", 1, R.n_ctx_for(reqs), logits_all=True)
        got = R.score_all(llm, reqs, 5)
        for g, w in zip(got, want):
            assert g["loglik"] == pytest.approx(w["loglik"], abs=tol * abs(w["loglik"])), name
        if name == "f32":
            assert [g["greedy"] for g in got] == [w["greedy"] for w in want]
    speed = R.speeds(tmp_path / "q8_0.gguf", reqs[2][0] * 8, {"prefill_tokens": 64, "decode_tokens": 8,
                                                              "speed_repeats": 2, "threads": 1})
    assert speed["decode_tokens_per_s"] > 0 and speed["own_timer_decode_tokens_per_s"] >= speed["decode_tokens_per_s"]


def test_runtime_table_ratios_stay_within_one_runtime_and_cpu():
    from stages.reporting.runtimes import table

    def row(runtime, bits, dec, cpu):
        return {"runtime": runtime, "bits": bits, "method": "none" if bits >= 16 else "x", "acc": 0.5,
                "decode_tokens_per_s": dec, "prefill_tokens_per_s": 1.0, "size_mb": 1.0,
                "weight_bytes_per_token": 1e6, "bandwidth_fraction": 0.5, "bench_cpu": cpu}
    text = table({"llamacpp-f16": row("llama.cpp", 16, 50.0, "Xeon"),
                  "llamacpp-q4_0": row("llama.cpp", 4, 150.0, "Xeon"),
                  "base": row("torch", 32, 20.0, "Xeon"), "base-epyc": row("torch", 32, 10.0, "EPYC"),
                  "prune": {**row("torch", 32, 5.0, "EPYC"), "method": "prune"},
                  "int4": row("torch", 4, 40.0, "EPYC")})
    lines = {line.split("`")[1]: line for line in text.splitlines() if "`" in line}
    assert "| 3.00× |" in lines["llamacpp-q4_0"] and "| 4.00× |" in lines["int4"]   # vs its own CPU's fp32
    assert "| 0.50× |" in lines["prune"]   # vs the uncompressed row, not another 32-bit one
    alone = table({"prune": {**row("torch", 32, 5.0, "EPYC"), "method": "prune"}})
    assert "| n/a |" in alone                  # no uncompressed row on that CPU: no ratio
    assert "Timed on 2 different CPUs** (EPYC, Xeon)" in text
    assert "different CPUs" not in table({"base": row("torch", 32, 20.0, "Xeon")})


def test_torch_rows_prefer_their_own_rss_and_bound_over_the_other_runs_triad():
    from stages.reporting.runtimes import NO_RSS, torch_rows

    old = {"method": "none", "param_mb": 100.0, "decode_tokens_per_s": 10.0, "bench_cpu": "EPYC"}
    new = {**old, "peak_rss_mb": 700.0, "weight_bytes_per_token": 50_000_000, "bandwidth_fraction": 0.2}
    rows = torch_rows({"old": old, "new": new}, bw=10.0, bw_cpu="EPYC")
    assert rows["old"]["peak_rss_mb"] is None and rows["old"]["peak_rss_mb_reason"] == NO_RSS
    assert rows["old"]["bandwidth_fraction"] == pytest.approx(10.0 / (10e9 / 100e6))   # other run's triad
    assert rows["new"]["peak_rss_mb"] == 700.0 and "peak_rss_mb_reason" not in rows["new"]
    assert rows["new"]["bandwidth_fraction"] == 0.2 and rows["new"]["weight_bytes_per_token"] == 50_000_000
    elsewhere = torch_rows({"old": {**old, "bench_cpu": "Xeon"}}, bw=10.0, bw_cpu="EPYC")
    assert elsewhere["old"]["bandwidth_fraction"] is None   # never a ratio across machines
