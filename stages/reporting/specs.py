"""What every reported metric means: its key, label and unit, which direction is better, the
file it comes from, and whether it carries a 95% interval (`<key>_ci95` beside it)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str
    label: str                     # table/axis label with unit; "{k}" is replaced by top-k's k
    higher_is_better: bool | None  # None: descriptive (a count, a setting), kept out of summary.json
    source: str = "eval"           # file it is read from: eval | bench | agreement | convert
    scale: float = 1.0             # display factor (0..1 accuracies are shown in %)
    fmt: str = ".2f"
    nullable: bool = False         # may be null (AP without ground truth, an undefined COCO stat)
    group: str = "cost"            # report table: accuracy | cost (speed, size) | energy; info if no direction
    ci: bool = False               # carries `<key>_ci95: [low, high]` (95%, bootstrap)
    spread: bool = False           # carries `<key>_p10_p90: [p10, p90]` over repeated windows
    kind: str = "number"           # number | text | bool


_AP = dict(scale=100.0, fmt=".1f", nullable=True, group="accuracy")
_BENCH = dict(source="bench")
_EN = dict(source="bench", group="energy")


def _energy(window: str, inferences: str, compress: str, source: str, reference: str):
    """The energy columns both families share: power, carbon, one-time cost, break-even."""
    return (
        Metric("power_w", f"average power {window} (W)", False, fmt=".1f", **_EN),
        Metric("idle_power_w", "idle power before it (W)", False, fmt=".1f", **_EN),
        Metric("gco2e_per_1000", f"gCO2e per 1000 {inferences}", False, fmt=".3g", **_EN),
        Metric("compress_energy_j", f"{compress} energy (J)", False, source, fmt=".0f",
               nullable=True, group="energy"),
        Metric("compress_gco2e", f"{compress} gCO2e", False, source, fmt=".3g", nullable=True,
               group="energy"),
        Metric("break_even_inferences", f"break-even vs {reference} ({inferences})", False,
               fmt=".0f", nullable=True, group="energy"),
        Metric("energy_method", "energy method", None, fmt="", kind="text"),
    )
DETECTOR_METRICS = (
    Metric("AP", "COCO AP@[.5:.95] (%)", True, ci=True, **_AP),
    Metric("AP50", "AP50 (%)", True, ci=True, **_AP),
    Metric("AP75", "AP75 (%)", True, **_AP),
    Metric("AP_small", "AP small (%)", True, **_AP),
    Metric("AP_medium", "AP medium (%)", True, **_AP),
    Metric("AP_large", "AP large (%)", True, **_AP),
    Metric("AR100", "AR@100 (%)", True, **_AP),
    Metric("agreement_mAP", "agreement mAP vs float32 (%)", True, "agreement", 100.0, ".1f",
           nullable=True, group="accuracy", ci=True),
    Metric("agreement_AP50", "agreement AP50 vs float32 (%)", True, "agreement", 100.0, ".1f",
           nullable=True, group="accuracy", ci=True),
    Metric("latency_ms_median", "invoke latency median (ms)", False, **_BENCH),
    Metric("latency_ms_p90", "invoke latency p90 (ms)", False, **_BENCH),
    Metric("network_ms_median", "network-only latency median (ms)", False, **_BENCH),
    Metric("invoke_per_s", "invokes/s", True, fmt=".1f", **_BENCH),
    Metric("images_per_s", "images/s end to end", True, fmt=".1f", **_BENCH),
    Metric("e2e_over_invoke", "end-to-end ÷ bare-invoke throughput", True, **_BENCH),
    Metric("size_mb", "model size (MB)", False, **_BENCH),
    Metric("peak_rss_mb", "peak RSS of the benchmark (MB)", False, fmt=".0f", **_BENCH),
    Metric("energy_j_per_image", "energy per image, bare invoke (J)", False, fmt=".3g", spread=True, **_EN),
    Metric("energy_j_per_image_e2e", "energy per image end to end (J)", False, fmt=".3g",
           spread=True, **_EN),
    *_energy("end to end", "images", "conversion", "convert", "float32"),
    Metric("runtime", "runtime", None, fmt="", kind="text"),
    Metric("precision", "precision", None, fmt="", kind="text"),
    Metric("has_ground_truth", "ground truth", None, fmt="", kind="bool"),
    Metric("num_images", "images", None, fmt="d"),
    Metric("threads", "threads", None, fmt="d", **_BENCH),
)

PUBLISHED_MAP = 22.0  # COCO mAP, TF1 detection model zoo, ssd_mobilenet_v2_coco_2018_03_29
