"""Knowledge distillation (Hinton et al., 2015) of a student from the base model as teacher,
on the calibration corpus only. The same loop is the recovery fine-tuning that follows
pruning (a pruned student keeps its zeros: its masks are re-applied after every step).

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * LM loss

Batches are seq_len-token windows of the concatenated passages (no padding), drawn with a
seeded generator; AdamW at a constant learning rate after a 10 % linear warm-up. A hand-written
loop rather than transformers.Trainer: Trainer has no teacher term, and this is 40 lines.
"""
from __future__ import annotations

import math


def drop_layers(model, every: int):
    """The student made from the teacher by removing every `every`-th decoder layer (2: keep
    layers 0, 2, 4, ...; 0: keep all), as DistilBERT initialised its student."""
    import torch

    if every <= 1:
        return model
    keep = [layer for i, layer in enumerate(model.model.layers) if i % every == 0]
    for i, layer in enumerate(keep):
        layer.self_attn.layer_idx = i   # the KV cache indexes layers by this
    model.model.layers = torch.nn.ModuleList(keep)
    model.config.num_hidden_layers = len(keep)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:len(keep)]
    return model


def windows(tok, texts: list[str], seq_len: int):
    """The passages' tokens (EOS between them) cut into [n, seq_len] windows."""
    import torch

    ids = []
    for t in texts:
        ids += tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    n = len(ids) // seq_len
    return torch.tensor(ids[:n * seq_len]).reshape(n, seq_len)


def train(student, teacher, data, cfg: dict, seed: int, masks: dict | None = None) -> list[float]:
    """cfg: steps, batch_size, lr, temperature, alpha. Returns the loss of every step."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg["lr"], weight_decay=0.0)
    warm = max(1, math.ceil(0.1 * cfg["steps"]))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    T, a = cfg["temperature"], cfg["alpha"]
    layers = dict(student.model.layers.named_modules())
    student.train(), teacher.eval()
    device = next(student.parameters()).device   # the draws stay on the CPU generator
    losses = []
    for _ in range(cfg["steps"]):
        batch = data[torch.randint(len(data), (cfg["batch_size"],), generator=gen)].to(device)
        with torch.no_grad():
            t_logits = teacher(input_ids=batch).logits
        s_logits = student(input_ids=batch).logits
        kl = F.kl_div(F.log_softmax(s_logits / T, -1), F.log_softmax(t_logits / T, -1),
                      log_target=True, reduction="batchmean") / batch.shape[1]
        lm = F.cross_entropy(s_logits[:, :-1].flatten(0, 1), batch[:, 1:].flatten())
        loss = a * T * T * kl + (1 - a) * lm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step(), sched.step()
        if masks:
            with torch.no_grad():
                for name, mask in masks.items():
                    layers[name].weight.mul_(mask)
        losses.append(round(float(loss.detach()), 5))
    student.eval()
    return losses
