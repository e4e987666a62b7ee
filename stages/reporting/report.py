"""What every reported metric means, and the Markdown report built from them (pure functions)."""
from __future__ import annotations

import yaml

from stages.reporting import energy
from stages.reporting.specs import DETECTOR_METRICS, PUBLISHED_MAP
from stages.reporting.tables import overlaps, ratio_lines, tables


def caveats(params: dict, det: dict[str, dict]) -> list[str]:
    """One line per number that needs a caveat, from the sources that ran."""
    out = []
    if not all(r["has_ground_truth"] for r in det.values()):
        out.append("**Detector accuracy is agreement with float32, not COCO mAP**: the COCO source "
                   f"`{params['coco.source']}` has no ground truth, so each variant is scored (COCO "
                   "mAP) against float32's own detections as pseudo ground truth; float32 is ~100% "
                   "by construction.")
    n = min(r["num_images"] for r in det.values())
    if n < 5000:
        out.append(f"**Small COCO sample**: {n} images (val2017 has 5000) give noisy scores, "
                   "skewed by which images and classes the sample holds; compare variants with "
                   f"each other rather than with the published {PUBLISHED_MAP:g} mAP.")
    for name, model in params["models"].items():
        if model["weights"]["source"] == "package":
            out.append(f"**{name}'s base is not the original checkpoint**: its package ships a "
                       f"GGUF ({model['weights']['file']}), dequantized to float32, so its base "
                       "already carries that file's rounding error and every method re-quantizes it.")
    if params["lambada.source"] == "offline":
        out.append("**Not the official LAMBADA**: `lambada.source=offline` builds a LAMBADA-style "
                   "last-word set from BBC News articles; accuracies are not comparable with "
                   "published `lambada_openai` numbers.")
    return out


REFERENCES = [
    f"SSD MobileNet v2 COCO: **{PUBLISHED_MAP:g} COCO mAP** published in the TF1 detection model "
    "zoo (`ssd_mobilenet_v2_coco_2018_03_29`); our AP columns are the same metric "
    "(pycocotools AP@[.5:.95], shown in %).",
    "LAMBADA `acc` follows lm-evaluation-harness `lambada_openai`: context = the passage minus "
    "its last space-separated word, target = `\" \" + last word`; an example counts when every "
    "target token is the greedy argmax given the context and the previous target tokens.",
    "`topk_acc`: the target's first token is among the model's top k next-token predictions. "
    "`topk_word_acc`: every target token is in the top k (the whole word).",
    "`ppl`: perplexity of the target tokens given the context.",
    "`of bound`: decode tokens/s × weight bytes read per token ÷ the read bandwidth measured on a "
    "working set of that many bytes at the benchmark's threads (so cache residency counts); above "
    "100 % the bound is marked invalid for that row.",
]


def render(det: dict[str, dict], lm_section: list[str], params: dict, machine: dict,
           figures: list[tuple[str, str]]) -> str:
    """The whole report. `params`: the params used, keyed as in dvc.yaml (`coco.source`,
    `detector`, ...); `figures`: [(title, png path relative to the report)]."""
    src = {"coco.source": params["coco.source"], "detector.source": params["detector"]["source"],
           "lambada.source": params["lambada.source"]}
    src.update({f"models.{n}": m["weights"]["source"] for n, m in params["models"].items()})
    cut = next((i for i, line in enumerate(lm_section) if line.startswith("## Language models")), 0)
    gate, lm_tables = lm_section[:cut], lm_section[cut:]   # the pass/fail matrix heads the report
    parts = ["# Results: what compression does to a detector and a language model", "", *gate]
    if gate and "host" in params:
        parts += [f"Speed, size and energy beside each pass: timed on host **{params['host']}**, "
                  "batch 1 (the tables below give each row's TTFT, TPOT and energy method).", ""]
    parts += ["## Data and model sources", ""]
    parts += [f"- `{name}`: **{value}**" for name, value in src.items()]
    if "host" in params:
        parts += [f"- `host`: **{params['host']}**: every speed, memory and energy figure below was "
                  "timed there (metrics/*/bench/<host>/)"]
    notes = caveats(params, det)
    if notes:
        parts += ["", "## Caveats", ""] + [f"- {line}" for line in notes]
    published = {"published float, full COCO (TF1 zoo)": {"AP": PUBLISHED_MAP / 100}}
    parts += ["", "## Energy: how it was obtained", ""]
    parts += [f"- {line}" for line in energy.notes(det)]
    parts += [f"- One inference: {energy.DEFINITION} Carbon at {params.get('grid', 'the params')}."]
    parts += ["", "## Detector (SSD MobileNet v2: LiteRT, ONNX Runtime, OpenVINO)", ""]
    parts += tables(det, DETECTOR_METRICS, extra=published)
    ratios = ratio_lines(det)
    if ratios:
        parts += ["### int8 speed-up per runtime (one run, this machine)", ""] + ratios + [""]
    parts += lm_tables
    parts += [
              "## Differences within the noise", "",
              "Brackets are 95% bootstrap intervals over the evaluated images or examples. "
              "These pairs of variants have overlapping intervals, so this sample does not "
              "resolve their difference:", ""]
    same = overlaps(det, DETECTOR_METRICS)
    parts += [f"- {line}" for line in same] or ["- none: every difference is resolved."]
    parts += ["", "## Figures", ""]
    parts += [f"![{title}]({path})\n" for title, path in figures]
    parts += ["## Metric definitions and references", ""] + [f"- {r}" for r in REFERENCES]
    parts += ["", "## Params used", "", "```yaml",
              yaml.safe_dump(params, sort_keys=False).rstrip(), "```", "",
              "## Machine (recorded by the benchmark stages)", ""]
    parts += [f"- {key}: {value}" for key, value in machine.items()]
    return "\n".join(parts) + "\n"
