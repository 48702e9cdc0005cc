"""Sparse autoencoders: from the sae-lens registry, a local sae-lens directory, or trained here.

A prepared SAE is a directory with ``stsflow_sae.json`` (identity, provenance, quality figures,
warnings) and, for registry and trained SAEs, the sae-lens inference files (``cfg.json``,
``sae_weights.safetensors``).

Choices the paper leaves open, made here:

* **The SAE must belong to the model and layer.** A pretrained SAE must read the residual stream
  after block L (sae-lens hook ``blocks.L.hook_resid_post``, or ``blocks.{L+1}.hook_resid_pre``,
  the same tensor) and take vectors of the model's hidden size. Both are checked before any other
  work (a registry SAE's config is fetched and checked before its weights), with the wording of
  config validation (``stsflow.config.checks.sae_fit_problems``). ``accept_hook:`` accepts one named
  other hook and is recorded as ``accepted_hook``; an input-width mismatch has no override (the
  encoder cannot be applied at all).
* **A declared model that differs from the configured one is a warning**, not an error: Gemma
  Scope's SAEs for gemma-2-9b-it are listed under ``gemma-2-9b``, Llama Scope was trained on the
  base Llama-3.1-8B, and both are used with the instruct models. It is recorded as a structured
  entry of ``warnings``.
* **Quality figures on held-out tokens**, for every SAE: windows of the corpus text rendered after
  the chat head (``EVAL_CONTEXT`` tokens for pretrained SAEs, ``train.context_length`` for trained
  ones), drawn with a seed until ``eval_tokens`` tokens; a trained SAE never trains on them.
  ``l0`` (mean active features per token), ``fraction_variance_explained``
  (1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²), ``dead_fraction`` (the share of features active on none of
  these tokens), and ``loss_recovered`` =
  (CE_zero − CE_sae) / (CE_zero − CE_clean), with the next-token cross-entropies
  ``ce_clean``, ``ce_with_sae`` and ``ce_zero_ablation`` recorded too.
* **Warnings** when ``fraction_variance_explained`` < 0.5 or ``loss_recovered`` < 0.7
  (``QUALITY_THRESHOLDS``): published residual SAEs are well above both (variance explained
  about 0.7-0.9, loss recovered above 0.9); below them the SAE misses much of what the layer
  carries and STS describes the SAE more than the model. And when more than half the features
  are dead (``DEAD_LIMIT``): STS ranks SAE dimensions, so a mostly dead dictionary has few to
  rank. A wide SAE measured on few tokens shows rare features as dead too; the warning then says
  how often a feature was expected to fire (tokens × L0 / width) and to raise ``eval_tokens``.
  Reports apply the rules as they are to every SAE in use, whenever it was prepared.
* **A trained SAE records its hook** (``metadata.hook_name``, as sae-lens does) and the model it
  was trained on (``metadata.model_name``) in its ``cfg.json``, so its directory can be reused as
  a ``local:`` SAE of the same layer in another config, and is refused at another layer.

Modules: ``prepare`` (registry and local SAEs), ``train`` (trained here), ``quality`` and
``activations`` (figures on held-out tokens), ``info`` (the manifest, torch-free), ``encoder``
(the fast exported encoder), ``architectures`` (the registry of SAE architectures).
"""
