"""Fine-tuning a sequence classifier (the fp32 node, and every recovery or distillation run):
AdamW with a linear decay (transformers' schedule), seeded shuffles and dropout, a fixed
thread count and deterministic kernels, so one machine gives the same bits twice (tested).

With a teacher, the loss is Hinton et al.'s distillation: the mean of the cross-entropy on
the labels and T^2 x KL(teacher || student) on the softened logits (temperature T)."""
from __future__ import annotations

import time

import numpy as np

from stages.models.encoder import encode


def fit(model, tok, recs: list[dict], label2id: dict[str, int], cfg: dict, max_len: int, seed: int,
        epochs: int, teacher=None, temperature: float = 2.0) -> dict:
    """Train `model` in place on recs ({"text", "label"}); returns what ran (steps, loss, s)."""
    import torch
    import torch.nn.functional as F
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    torch.set_num_threads(cfg["threads"])
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(seed)
    texts = [r["text"] for r in recs]
    labels = torch.tensor([label2id[r["label"]] for r in recs])
    bs = cfg["batch_size"]
    steps = epochs * -(-len(recs) // bs)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg["lr"],
                            weight_decay=cfg["weight_decay"])
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=steps // 10, num_training_steps=max(steps, 1))
    model.train()
    t0, losses = time.perf_counter(), []
    for _ in range(epochs):
        order = rng.permutation(len(recs))
        for start in range(0, len(recs), bs):
            idx = order[start:start + bs]
            batch = {k: torch.from_numpy(v) for k, v in encode(tok, [texts[i] for i in idx], max_len).items()}
            logits = model(**batch).logits
            loss = F.cross_entropy(logits, labels[idx])
            if teacher is not None:
                with torch.no_grad():
                    soft = F.log_softmax(teacher(**batch).logits / temperature, dim=-1)
                kd = F.kl_div(F.log_softmax(logits / temperature, dim=-1), soft, log_target=True,
                              reduction="batchmean") * temperature ** 2
                loss = 0.5 * loss + 0.5 * kd
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
    model.eval()
    return {"epochs": epochs, "steps": len(losses), "examples": len(recs),
            "final_loss": float(np.mean(losses[-10:])) if losses else None,
            "seconds": round(time.perf_counter() - t0, 2)}


def predict(model, tok, texts: list[str], max_len: int, batch: int = 64) -> np.ndarray:
    """Logits (float32) of `texts` in batches, in eval mode."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            enc = encode(tok, texts[start:start + batch], max_len)
            out.append(model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.float().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels), np.float32)
