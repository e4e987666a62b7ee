"""What every reported metric means, and the Markdown report built from them (pure functions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Metric:
    key: str
    label: str                     # table/axis label with unit; "{k}" is replaced by top-k's k
    higher_is_better: bool | None  # None: descriptive (a count, a setting), kept out of summary.json
    source: str = "eval"           # file it is read from: eval | agreement | quantize
    scale: float = 1.0             # display factor (0..1 accuracies are shown in %)
    fmt: str = ".2f"
    nullable: bool = False         # may be null (AP without ground truth, quantize info of base)
    group: str = "cost"            # report table: accuracy | cost (speed, size); info if no direction


_AP = dict(scale=100.0, fmt=".1f", nullable=True, group="accuracy")
DETECTOR_METRICS = (
    Metric("AP", "COCO AP@[.5:.95] (%)", True, **_AP),
    Metric("AP50", "AP50 (%)", True, **_AP),
    Metric("AP75", "AP75 (%)", True, **_AP),
    Metric("AP_small", "AP small (%)", True, **_AP),
    Metric("AP_medium", "AP medium (%)", True, **_AP),
    Metric("AP_large", "AP large (%)", True, **_AP),
    Metric("AR100", "AR@100 (%)", True, **_AP),
    Metric("agreement_mAP", "agreement mAP vs float32 (%)", True, "agreement", 100.0, ".1f",
           group="accuracy"),
    Metric("agreement_AP50", "agreement AP50 vs float32 (%)", True, "agreement", 100.0, ".1f",
           group="accuracy"),
    Metric("latency_ms_median", "invoke latency median (ms)", False),
    Metric("latency_ms_p90", "invoke latency p90 (ms)", False),
    Metric("invoke_per_s", "invokes/s", True, fmt=".1f"),
    Metric("images_per_s", "images/s end to end", True, fmt=".1f"),
    Metric("e2e_over_invoke", "end-to-end ÷ bare-invoke throughput", True),
    Metric("size_mb", "model size (MB)", False),
    Metric("has_ground_truth", "ground truth", None, fmt=""),
    Metric("num_images", "images", None, fmt="d"),
    Metric("threads", "threads", None, fmt="d"),
)
_ACC = dict(scale=100.0, fmt=".1f", group="accuracy")
LLM_METRICS = (
    Metric("acc", "LAMBADA acc (%)", True, **_ACC),
    Metric("topk_acc", "top-{k} first-token acc (%)", True, **_ACC),
    Metric("topk_word_acc", "top-{k} whole-word acc (%)", True, **_ACC),
    Metric("ppl", "target-word perplexity", False, group="accuracy"),
    Metric("decode_tokens_per_s", "decode tokens/s", True, fmt=".1f"),
    Metric("prefill_tokens_per_s", "prefill tokens/s", True, fmt=".0f"),
    Metric("eval_examples_per_s", "eval examples/s", True),
    Metric("size_mb", "size on disk (MB)", False),
    Metric("param_mb", "weights in memory (MB)", False),
    Metric("quant_time_s", "GPTQ time (s)", False, "quantize", fmt=".1f", nullable=True),
    Metric("bits", "bits", None, fmt="g", nullable=True),
    Metric("group_size", "group size", None, "quantize", fmt="d", nullable=True),
    Metric("k", "k", None, fmt="d"),
    Metric("num_examples", "examples", None, fmt="d"),
)

PUBLISHED_MAP = 22.0  # COCO mAP, TF1 detection model zoo, ssd_mobilenet_v2_coco_2018_03_29
LIBRARIES = ("torch", "tensorflow-cpu", "tensorflow", "ai-edge-litert", "transformers",
             "gptqmodel", "optimum", "pycocotools", "numpy", "dvc", "plotly", "kaleido")


def label(m: Metric, k: Any = "k") -> str:
    return m.label.replace("{k}", str(k))


def fmt_value(m: Metric, value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if m.scale != 1.0 and value < 0:  # pycocotools' -1: no object of that size in the set
        return "n/a"
    return format(value * m.scale if m.scale != 1.0 else value, m.fmt)


def table(rows: dict[str, dict], metrics, k: Any = "k", extra: dict | None = None) -> str:
    """One row per variant (in the dict's order), one column per metric; `extra`: a reference
    row {name: {key: value}} appended in italics."""
    head = ["variant"] + [label(m, k) for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, row in rows.items():
        cells = [f"`{variant}`"] + [fmt_value(m, row.get(m.key)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    for name, row in (extra or {}).items():
        cells = [f"*{name}*"] + [fmt_value(m, row[m.key]) if m.key in row else "" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(rows: dict[str, dict], metrics, k: Any = "k", extra: dict | None = None) -> list[str]:
    """Accuracy, then speed and size, then the run's counts and settings."""
    groups = [("Accuracy", [m for m in metrics if m.group == "accuracy"], extra),
              ("Speed and size", [m for m in metrics if m.higher_is_better is not None
                                  and m.group == "cost"], None),
              ("Counts and settings", [m for m in metrics if m.higher_is_better is None], None)]
    out = []
    for title, group, ref in groups:
        out += [f"### {title}", "", table(rows, group, k, ref), ""]
    return out


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
    if params["llm.source"] == "package":
        out.append("**The base LLM is not the original checkpoint**: with `llm.source=package` it "
                   "was dequantized from a 4-bit GGUF (Q4_1), so `base` already carries 4-bit "
                   "rounding error and GPTQ re-quantizes those weights.")
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
]


def render(det: dict[str, dict], llm: dict[str, dict], params: dict, machine: dict,
           figures: list[tuple[str, str]]) -> str:
    """The whole report. `params`: the params used, keyed as in dvc.yaml (`coco.source`,
    `detector`, ...); `figures`: [(title, png path relative to the report)]."""
    k = next(iter(llm.values()))["k"]
    src = {"coco.source": params["coco.source"], "detector.source": params["detector"]["source"],
           "lambada.source": params["lambada.source"], "llm.source": params["llm.source"]}
    parts = ["# Results: what compression does to a detector and a language model", "",
             "## Data and model sources", ""]
    parts += [f"- `{name}`: **{value}**" for name, value in src.items()]
    notes = caveats(params, det)
    if notes:
        parts += ["", "## Caveats", ""] + [f"- {line}" for line in notes]
    published = {"published float, full COCO (TF1 zoo)": {"AP": PUBLISHED_MAP / 100}}
    parts += ["", "## Detector (SSD MobileNet v2, LiteRT)", ""]
    parts += tables(det, DETECTOR_METRICS, extra=published)
    parts += ["## Language model (GPTQ)", ""] + tables(llm, LLM_METRICS, k)
    parts += [f"`acc` is `lambada_openai`-style (definition below); top-k uses k = {k}.", "",
              "## Figures", ""]
    parts += [f"![{title}]({path})\n" for title, path in figures]
    parts += ["## Metric definitions and references", ""] + [f"- {r}" for r in REFERENCES]
    parts += ["", "## Params used", "", "```yaml",
              yaml.safe_dump(params, sort_keys=False).rstrip(), "```", "",
              "## Machine (where `aggregate` ran)", ""]
    parts += [f"- {key}: {value}" for key, value in machine.items()]
    return "\n".join(parts) + "\n"
