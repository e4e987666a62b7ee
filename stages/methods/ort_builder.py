"""The onnxruntime-genai 0.18 model builder, run as `python -m stages.methods.ort_builder <its
arguments>`: the builder's own command line, with one compatibility patch.

Why a patch (hand-written, not the library's): the builder's Gemma 3 path reads a flat
`rope_parameters["rope_type"]` and `config.rope_local_base_freq`, while transformers 5 stores
Gemma 3's RoPE per layer type (`{"full_attention": {...}, "sliding_attention": {...}}`), so the
unpatched builder stops with KeyError 'rope_type'. The patch flattens that config for
Gemma3Model only, as the builder's own Gemma4Model reads it; every other model is built untouched.
"""
from __future__ import annotations

import runpy


def flatten_gemma3_rope(config) -> None:
    """The per-layer-type RoPE of a transformers 5 Gemma 3 config, in the builder's flat form."""
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict) and "full_attention" in rope:
        config.rope_local_base_freq = rope["sliding_attention"]["rope_theta"]
        config.rope_theta = rope["full_attention"]["rope_theta"]
        config.rope_parameters = dict(rope["full_attention"])


def patch() -> None:
    """Gemma3Model of `builders.gemma`: the builder puts its own folder on sys.path and imports
    its model classes from there (`from builders import ...`), not from the package path."""
    import importlib

    import onnxruntime_genai.models  # noqa: F401  (puts the builder's folder on sys.path)

    gemma = importlib.import_module("builders.gemma")
    init = gemma.Gemma3Model.__init__

    def patched(self, config, *args, **kwargs):
        if type(self) is gemma.Gemma3Model:   # not Gemma4Model, which reads the nested form itself
            flatten_gemma3_rope(config)
        init(self, config, *args, **kwargs)

    gemma.Gemma3Model.__init__ = patched


if __name__ == "__main__":
    patch()
    runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__", alter_sys=True)
