"""Mean low-rank gradients of a corpus, for the gradient-similarity predictor (in the spirit of
LESS, Xia et al. 2024: the strongest competitor that also needs no fine-tuning).

Definition chosen here. LoRA adapters (rank ``RANK`` on the modules ``finetune.lora_targets``
names; A drawn with ``sts.control_seed``, B = 0, as peft initialises them) are put on the base
model. For each example (prompt + response; loss on the response tokens, mean over them) the
gradient of the loss with respect to the adapters is taken; at B = 0 that is the gradient of the
B matrices, i.e. the full weight gradient seen through the random A. Each example's gradient is
normalised to unit length (LESS compares directions), the corpus mean is taken, and it is
projected to ``sts.grad_dim`` coordinates (0: kept whole) with a seeded CountSketch (each coordinate hashed to one
bucket with a random sign: inner products are preserved in expectation, and the same seed gives
the same sketch in every job). The predictor ``grad_sim`` is the cosine between the SFT set's and
a domain's projected means.

Examples: for an SFT set, ``sts.grad_examples`` records drawn with ``sts.sample_seed`` (question
→ solution); for a domain, its worked examples (the demonstrations split: question → chain of
thought), as LESS uses a target task's few-shot validation examples. Cost: one forward and one
backward pass per example, a separate job per corpus (not the extraction pass: it needs gradients
of the full model).
"""

from __future__ import annotations

import numpy as np
import torch

from stsflow.progress import Progress

RANK = 8


def _lora_params(model):
    return [(n, p) for n, p in model.named_parameters() if "lora_B" in n]


def _sketch(params, dim: int, seed: int):
    """Per-parameter (bucket, sign) tensors of the CountSketch, in parameter order."""
    out = []
    for i, (_, p) in enumerate(params):
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + i)
        n = p.numel()
        out.append((torch.randint(0, dim, (n,), generator=g),
                    torch.randint(0, 2, (n,), generator=g).float().mul_(2).sub_(1)))
    return out


def project(vectors: list[torch.Tensor], sketch, dim: int) -> torch.Tensor:
    """The CountSketch of the concatenation of ``vectors`` (float64)."""
    out = torch.zeros(dim, dtype=torch.float64)
    for v, (bucket, sign) in zip(vectors, sketch):
        out.index_add_(0, bucket, v.detach().reshape(-1).double().cpu() * sign.double())
    return out


def mean_gradient(model, examples: list[tuple[list[int], list[int]]], targets: list[str],
                  seed: int, dim: int, log=print) -> tuple[np.ndarray, dict]:
    """(projected mean of the unit-normalised per-example adapter gradients, metadata)."""
    from peft import LoraConfig, get_peft_model

    from stsflow.finetune.train import response_loss_sum

    if not examples:
        raise ValueError("no example to take a gradient of")
    torch.manual_seed(int(seed))
    peft_model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=RANK, lora_dropout=0.0,
                                                  target_modules=list(targets), bias="none",
                                                  task_type="CAUSAL_LM"))
    peft_model.eval()  # no dropout; gradients still flow
    params = _lora_params(peft_model)
    if not params:
        raise ValueError(f"no LoRA adapter was placed on {targets}: check finetune.lora_targets")
    n_params = sum(p.numel() for _, p in params)
    sketch = _sketch(params, dim, seed) if dim else None  # dim 0: the exact, unprojected mean
    device = next(peft_model.parameters()).device
    total = torch.zeros(dim or n_params, dtype=torch.float64)
    progress = Progress("gradients", len(examples), "examples", log=log)
    for ids, labels in examples:
        peft_model.zero_grad(set_to_none=True)
        x = torch.tensor([ids], device=device)
        loss_sum, n = response_loss_sum(peft_model, x, torch.ones_like(x),
                                        torch.tensor([labels], device=device))
        (loss_sum / max(n, 1)).backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for _, p in params]
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
        if norm > 0:
            flat = (project(grads, sketch, dim) if sketch is not None
                    else torch.cat([g.detach().reshape(-1).double().cpu() for g in grads]))
            total += flat / norm
        progress.update()
    peft_model.zero_grad(set_to_none=True)
    return (total / len(examples)).numpy(), {"n_examples": len(examples), "rank": RANK,
                                              "targets": list(targets), "n_params": n_params,
                                              "dim": dim, "seed": int(seed)}
