"""One fine-tuning run's recipe (the config's ``finetune:`` section, one method and seed)."""

from __future__ import annotations

from dataclasses import dataclass

from stsflow.mode import FINETUNE_METHODS as METHODS


@dataclass
class FinetuneConfig:
    method: str = "full"
    epochs: int = 10
    lr: float = 1e-5
    batch_size: int = 256  # effective batch (examples per optimizer step)
    micro_batch_size: int = 4  # examples per forward pass; accumulation = batch / micro
    max_length: int = 2048
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_ratio: float = 0.1
    grad_clip: float | None = 1.0  # None or 0: no clipping
    seed: int = 0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    max_steps: int | None = None  # cap on optimizer steps; None = no cap
    gradient_checkpointing: bool = False
    deterministic: bool = True  # torch.use_deterministic_algorithms during training

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.batch_size < 1 or self.micro_batch_size < 1:
            raise ValueError("batch_size and micro_batch_size must be >= 1")
        if self.batch_size % self.micro_batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of "
                             f"micro_batch_size ({self.micro_batch_size})")
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be >= 1 or None")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_ratio must be in [0, 1)")
        self.betas = tuple(float(b) for b in self.betas)
        self.lora_targets = tuple(self.lora_targets)

    @property
    def grad_accum(self) -> int:
        return self.batch_size // self.micro_batch_size
