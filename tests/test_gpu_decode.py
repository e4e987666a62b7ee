"""The GPU decode stages (gpu_decode in dvc.yaml): absent from the CPU default, present once the
gpu profile fills their rows, each keyed by host and row, listing what it imports and reads;
on a machine without CUDA a row stops with one line and writes nothing."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.entry import gpu_decode, profile

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_params() -> dict:
    return profile.applied(ROOT / "params.yaml", profile.overrides("gpu"), whole_dag=False)


@pytest.fixture(scope="module")
def gpu_stages(gpu_params, tmp_path_factory):
    """Every stage DVC expands from dvc.yaml under the gpu profile: name -> (cmd, deps, params, outs)."""
    from dvc.repo import Repo

    tmp = tmp_path_factory.mktemp("dag")
    (tmp / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    (tmp / "params.yaml").write_text(yaml.safe_dump(gpu_params | {"host": "my-gpu"}, sort_keys=False))
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp, check=True)
    out = {}
    for st in Repo(str(tmp)).index.stages:
        params = [k for d in st.deps if type(d).__name__ == "ParamsDependency" for k in d.params]
        deps = [str(d.def_path) for d in st.deps if type(d).__name__ != "ParamsDependency"]
        out[st.addressing.split(":")[-1]] = (st.cmd, deps, params, [str(o.def_path) for o in st.outs])
    return out


def test_the_cpu_default_has_no_gpu_stage_and_the_profile_adds_one_per_row(gpu_params, gpu_stages):
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert default["gpu_decode"]["rows"] == {}
    rows = gpu_params["gpu_decode"]["rows"]
    assert {n for n in gpu_stages if n.startswith("gpu_decode@")} == {f"gpu_decode@{r}" for r in rows}
    for r in rows:
        assert gpu_stages[f"gpu_decode@{r}"][3] == [f"metrics/gpu/my-gpu/decode/{r}.json"]
    assert profile.targets("gpu") == ["gpu_decode"] and profile.targets("quick") == []
    kinds = {(v["weights"], v["head"], v.get("kernel", "tinygemm")) for v in rows.values()}
    assert (16, 16, "tinygemm") in kinds and {k for w, h, k in kinds if w == 4} == {"tinygemm", "triton", "gemlite", "gemlite_cached"}


def test_a_gpu_stage_lists_what_it_imports_and_exactly_what_it_reads(gpu_stages):
    from tests.test_dvc_contract import closure, covered, module_file

    for name, (cmd, deps, params, _) in gpu_stages.items():
        if not name.startswith("gpu_decode@"):
            continue
        missing = [module_file(m) for m in sorted(closure("stages.entry.gpu_decode"))
                   if module_file(m).stat().st_size and not covered(module_file(m), deps)]
        assert not missing, f"{name} imports {missing} without listing them"
        row = name.split("@")[1]
        assert sorted(params) == sorted(k.replace("${key}", row) for k in gpu_decode.PARAMS)
        assert "data/params.ok" not in deps   # runs on a GPU box without the CPU runtimes' packages


def run_row(tmp_path, params: dict, row: str):
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(params, sort_keys=False))
    out = tmp_path / "out" / f"{row}.json"
    r = subprocess.run([sys.executable, "-m", "stages.entry.gpu_decode", "--row", row, "--out", str(out),
                        "--params", str(f)], cwd=ROOT, capture_output=True, text=True,
                       env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    return r, out


def test_without_cuda_a_row_stops_with_one_line_and_writes_nothing(gpu_params, tmp_path):
    r, out = run_row(tmp_path, gpu_params, "llama3b-int4")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "CUDA" in r.stderr
    assert not out.parent.exists()


def test_every_profile_row_fits_its_kernel_and_a_shape_that_does_not_is_one_line_before_cuda(gpu_params, tmp_path):
    cfg = gpu_params["gpu_decode"]
    for row in cfg["rows"].values():   # what the GPU would refuse, found here on a CPU
        model_cfg, model_class, check, _ = gpu_decode.engine(row["shape"])
        check(model_cfg, row["weights"], row["head"], cfg["group_size"], row.get("kernel", "tinygemm"))
        assert model_class == ("OPTForCausalLM" if row["shape"].startswith("opt") else "LlamaForCausalLM")
    assert {"opt-350m", "llama-3.2-3b", "tinyllama-1.1b"} <= {r["shape"] for r in cfg["rows"].values()}
    bad = yaml.safe_load(yaml.safe_dump(gpu_params))   # SmolLM2's 576-wide layers in groups of 128
    bad["gpu_decode"]["rows"]["smol"] = {"shape": "smollm2-135m", "weights": 4, "head": 16}
    r, out = run_row(tmp_path, bad, "smol")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "CUDA" not in r.stderr
    assert "in % group_size 128 != 0" in r.stderr and not out.parent.exists()


def test_an_unknown_row_or_a_dotted_row_name_is_one_line(gpu_params, tmp_path):
    r, _ = run_row(tmp_path, gpu_params, "llama-3b")
    assert r.returncode == 2 and "has no row 'llama-3b'" in r.stderr and "Traceback" not in r.stderr
    bad = yaml.safe_load(yaml.safe_dump(gpu_params))
    bad["gpu_decode"]["rows"]["llama-3.2"] = bad["gpu_decode"]["rows"]["llama3b-int4"]
    r, _ = run_row(tmp_path, bad, "llama-3.2")
    assert r.returncode == 2 and "gpu_decode.rows" in r.stderr and "Traceback" not in r.stderr


def decode_row(gpu: str, tps: float, head: int = 16) -> dict:
    energy = {"method": "nvml", "basis": "counter", "unit": "token", "windows": 5, "units": 640.0,
              "joules": 500.0, "seconds": 1.2, "power_w": 400.0, "idle_power_w": 100.0,
              "j_per_unit": 0.78, "j_per_unit_p10": 0.77, "j_per_unit_p90": 0.79, "net_j_per_unit": 0.6}
    per_token, bound = 2_000_000_000, 3000.0
    return {"machine": {"gpu": gpu, "driver": "580", "torch": "2.11", "cuda": "13.0"}, "gpu": gpu,
            "model": "llama-3.2-3b", "kernel": "tinygemm", "weights": 4, "head": head, "group_size": 128,
            "prompt_tokens": 32, "decode_tokens": 128, "tokens_per_s": tps, "energy": energy,
            "weight_bytes_per_token": per_token, "copy_gb_s": bound, "read_gb_s": 2900.0,
            "bound_gb_s": bound, "bound_tokens_per_s": bound * 1e9 / per_token,
            "bandwidth_fraction": tps / (bound * 1e9 / per_token), "compile_s": 40.0,
            "gpu_memory_mb": 2400.0, "profile": None, "params": {}}


def test_the_report_gives_each_host_its_own_table_and_refuses_a_fraction_above_one(tmp_path):
    import json

    from stages.core.errors import PipelineError
    from stages.reporting import gpu_decode as R

    for host, gpu, tps in (("h100", "NVIDIA H100", 600.0), ("h200", "NVIDIA H200", 700.0)):
        (tmp_path / host / "decode").mkdir(parents=True)
        (tmp_path / host / "decode" / "llama3b-int4.json").write_text(json.dumps(decode_row(gpu, tps)))
    text = "\n".join(R.tables(tmp_path))
    assert text.count("| row |") == 2 and "Host `h100`: NVIDIA H100" in text and "Host `h200`: NVIDIA H200" in text
    assert "| 600.0 | 1500 | 0.400 |" in text and "| 700.0 | 1500 | 0.467 |" in text
    assert "CUDA 13.0, torch 2.11." in text and "libraries |" not in text
    newer = decode_row("NVIDIA H100", 650.0) | {"kernel": "gemlite"}
    newer["machine"] = newer["machine"] | {"torch": "2.12", "triton": "3.6.0", "gemlite": "0.6.0.post2"}
    (tmp_path / "h100" / "decode" / "llama3b-int4-gemlite.json").write_text(json.dumps(newer))
    text = "\n".join(R.tables(tmp_path))   # rows of one host with other libraries say so per row
    assert "libraries differ between rows" in text and "| torch 2.12, triton 3.6.0, gemlite 0.6.0.post2 |" in text
    assert "| torch 2.11 |" in text
    stem, _, fig = R.figure(tmp_path)   # one panel per host: hosts never share an axis
    bars = {t.xaxis: dict(zip(t.y, t.x)) for t in fig.data}
    assert bars == {"x": {"llama3b-int4": pytest.approx(0.4), "llama3b-int4-gemlite": pytest.approx(650 / 1500)},
                    "x2": {"llama3b-int4": pytest.approx(700 / 1500)}}
    assert R.figure(tmp_path / "none") is None
    (tmp_path / "h100" / "decode" / "llama3b-int4.json").write_text(json.dumps(decode_row("NVIDIA H100", 1600.0)))
    with pytest.raises(PipelineError, match="bandwidth_fraction"):
        R.tables(tmp_path)
