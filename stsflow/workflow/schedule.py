"""Scheduling on a machine with few cores (Snakemake's scheduler maximises the sum of the
priorities of the jobs it starts).

The STS table is the workflow's prediction, made before any fine-tuning, so the jobs it needs
(materialisations, model, SAEs, extractions, encodings, gradients, shifts and scores: the *chain*)
outrank the rest: a freed core goes to them before an evaluation. The SAEs head the chain (the
layer's own SAE before its extractions; ranked with the rest, the sweep's SAE and the gradients
went first). Fine-tuning needs two cores free at once, which happens only when no one-core job is
waiting for a freed core; it then outranks two evaluations but no chain job (10 < 20), so it
never delays the table (docs/performance.md has the measured order)."""

STS_CHAIN = 20
SAE = 25
FINETUNE = 10
