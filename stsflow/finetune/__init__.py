"""Fine-tuning for the validation loop: one training loop (``train``) driven by a
``config.settings.FinetuneSettings`` recipe, methods registered once (``methods``: full, LoRA; a
new method is a ``register_method`` call), atomic checkpoints (``checkpoint``)."""

from stsflow.finetune import methods  # noqa: F401  (registers the built-in methods)
