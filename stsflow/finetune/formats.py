"""The adapter formats a fine-tuned checkpoint can hold, as its metadata records them
(``adapter_type``): a PEFT LoRA adapter, merged into its base when a job loads it, or selective
maps on SAE dimensions, attached to their base. The names are the on-disk tags of saved
checkpoints (they read like the methods that first wrote them, and stay fixed so that every
checkpoint saved so far still loads); a method names the format it saves in its registration
(stsflow.finetune.methods)."""

LORA = "lora"
SELECTIVE_MAPS = "sae_select"
FORMATS = (LORA, SELECTIVE_MAPS)
