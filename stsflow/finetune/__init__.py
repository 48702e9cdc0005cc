"""Fine-tuning for the validation loop: one recipe (``recipe``), one training loop (``train``),
methods registered once (``methods``: full, LoRA; a new method is a ``register_method`` call),
atomic checkpoints (``checkpoint``)."""

from stsflow.finetune import methods  # noqa: F401  (registers the built-in methods)
