"""The language model as an OpenVINO graph the way optimum-intel exports one (optimum-intel 2.2
itself caps transformers below 5.6; the project pins 5.23): ov.convert_model on the PyTorch
model with SDPA attention, the KV cache as request state, and a beam_idx input.

Why this path and not the onnxruntime-genai builder's ONNX graph (used until 2026-12-05): the
ONNX frontend decomposes that graph's GroupQueryAttention into about 70 small nodes per layer
(2,050 in all) whose per-node dispatch and per-step shape inference cost more than the matmuls
(measured: node time 9.6 of 16.2 ms per int4 decode step), and its IR cannot be read back. Here
the CPU plugin fuses ReadValue -> Gather(beam_idx) -> Concat -> SDPA into one attention node
with its own KV cache (833 nodes), as in every optimum-intel export. The plugin's pattern
(StatefulSDPAFusion) needs that Gather, so beam_idx is added even though batch is always 1.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from stages.runtimes.openvino_lm import require


def cache_names(layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    return past, [p.replace("past_key_values.", "present.") for p in past]


def traced(model, layers: int):
    """forward(input_ids, attention_mask, *past) -> (logits, *present), positions from the mask
    (a deployment feeds only ids and mask). The cache layers are filled directly: DynamicLayer's
    lazy init starts from an empty 1-D tensor, which the tracer cannot concatenate."""
    import torch
    from transformers import DynamicCache

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask, *past):
            cache = DynamicCache(config=self.m.config)
            for i, layer in enumerate(cache.layers[:layers]):
                layer.dtype, layer.device = past[0].dtype, past[0].device
                layer.keys, layer.values, layer.is_initialized = past[2 * i], past[2 * i + 1], True
            positions = (attention_mask.cumsum(-1) - 1)[:, -input_ids.shape[1]:]
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                         past_key_values=cache, use_cache=True)
            kv = out.past_key_values.layers
            return (out.logits, *[t for i in range(layers) for t in (kv[i].keys, kv[i].values)])

    return Flat()


def export(base: Path):
    """The base model (fp32) as a stateful OpenVINO model: inputs input_ids, attention_mask,
    beam_idx; output logits; per layer two states of shape [1, kv_heads, cached, head_size]."""
    import torch
    from transformers import AutoModelForCausalLM

    ov = require()
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="sdpa").eval()
    cfg = model.config
    layers, heads = cfg.num_hidden_layers, cfg.num_key_value_heads
    head_size = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    past, present = cache_names(layers)
    example = (torch.ones(1, 3, dtype=torch.long), torch.ones(1, 7, dtype=torch.long),
               *[torch.zeros(1, heads, 4, head_size) for _ in past])
    # The tracer warns that transformers' shape checks become constants; every one is fixed for
    # this call pattern (mask length = cache + new tokens, a mask always given), and the tests
    # check the graph against PyTorch and against a full recompute at every decode step.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        m = ov.convert_model(traced(model, layers), example_input=example)
    for port, name in zip(m.inputs, ["input_ids", "attention_mask", *past]):
        port.get_tensor().set_names({name})
    for port, name in zip(m.outputs, ["logits", *present]):
        port.get_tensor().set_names({name})
    m.reshape({n: ov.PartialShape([1, heads, -1, head_size]) if n in past else ov.PartialShape([1, -1])
               for n in ["input_ids", "attention_mask", *past]})
    return stateful(float_masks(m), dict(zip(past, present)), ov)


def float_masks(m):
    """The traced SDPA ops take transformers' boolean mask; the CPU plugin's fused attention runs
    an additive float mask (0 / float32 min) twice as fast in prefill (256 tokens, int4: 405 ->
    211 ms; same logits, bit for bit), so the boolean one is turned into that, as optimum-intel's
    patched mask functions do."""
    from openvino import opset13 as ops

    for op in m.get_ops():
        if op.get_type_name() == "ScaledDotProductAttention" and op.get_input_size() > 3 \
                and op.input_value(3).get_element_type().get_type_name() == "boolean":
            keep = op.input_value(3)
            additive = ops.select(keep, ops.constant(np.float32(0)), ops.constant(np.finfo(np.float32).min))
            for user in [u for u in keep.get_target_inputs() if u.get_node().get_type_name() == "ScaledDotProductAttention"]:
                user.replace_source_output(additive.output(0))
    m.validate_nodes_and_infer_types()
    return m


def stateful(m, pairs: dict[str, str], ov):
    """beam_idx gathers every past tensor on the batch axis; then the cache becomes state
    (openvino's make-stateful transformation) starting from zeros of [1, heads, 0, head_size]."""
    from openvino import opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    beam = ops.parameter([-1], ov.Type.i32, name="beam_idx")
    beam.output(0).get_tensor().set_names({"beam_idx"})
    for port in [i for i in m.inputs if i.get_any_name() in pairs]:
        gather = ops.gather(port, beam, ops.constant(0))
        for user in list(port.get_node().output(0).get_target_inputs()):
            if user.get_node().get_friendly_name() != gather.get_friendly_name():
                user.replace_source_output(gather.output(0))
    m.add_parameters([beam])
    m.validate_nodes_and_infer_types()
    apply_make_stateful_transformation(m, pairs)
    for op in m.get_ops():
        if op.get_type_name() == "ReadValue":
            dims = [d.get_min_length() for d in op.get_output_partial_shape(0)]
            op.set_arguments([ops.broadcast(ops.constant(np.float32(0)), ops.constant(np.array(dims, np.int64)))])
    m.validate_nodes_and_infer_types()
    return m
