"""The headline numbers of every variant, one small flat file each (metrics/headline/<family>/
<variant>.json): the files DVC declares as metrics, so that `dvc metrics show`, `dvc metrics diff`
and `dvc exp show` print one readable row per variant (a dozen columns), not every field of
every stage's file. The stages' own files keep everything; the report reads those."""
from __future__ import annotations

from pathlib import Path

LM = {"acc": "acc", "delta_acc": "delta_acc", "agreement": "agreement", "kl_mean": "kl_mean",
      "decode_tok_s": "decode_tokens_per_s", "ttft_ms": "ttft_ms", "size_mb": "size_mb",
      "j_per_token": "energy_j_per_token"}    # headline key -> LM row key
DETECTOR = {"latency_ms": "latency_ms_median", "images_per_s": "images_per_s", "size_mb": "size_mb",
            "j_per_image": "energy_j_per_image_e2e"}   # plus its accuracy (COCO AP or agreement)


def _round(v):
    return round(v, 6) if isinstance(v, float) else v


def files(det: dict[str, dict], lm_rows: dict[str, dict]) -> dict[Path, dict]:
    """{path below metrics/headline: its flat numbers} for every variant of the report."""
    out = {}
    for key, r in lm_rows.items():
        out[Path("lm") / f"{key}.json"] = {k: _round(r[src]) for k, src in LM.items()}
    for key, r in det.items():
        acc = {"coco_ap": r["AP"]} if r["has_ground_truth"] else {"agreement_map": r["agreement_mAP"]}
        out[Path("detector") / f"{key}.json"] = {**{k: _round(v) for k, v in acc.items()},
                                                 **{k: _round(r[src]) for k, src in DETECTOR.items()}}
    return out
