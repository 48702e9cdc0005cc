"""Job bodies, one module per rule family (prepare, extract, reduce, validate, report): what each
rule does, as plain functions of paths and typed settings. ``reduce`` and ``report`` never
import torch, so their rules run in the small ``envs/reduce.yaml`` environment."""
