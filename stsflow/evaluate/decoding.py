"""How every generation engine decodes: greedily, with nothing from the model's generation config
but its token ids, as the official MMLU-Pro script does (vLLM with ``SamplingParams(temperature=0,
max_tokens=..., stop=["Question:"])``: no repetition, presence or frequency penalty, no minimum
length, no suppressed, forced or biased tokens).

* **Greedy**: the most likely token at every step, one beam, no sampling.
* **No penalty or constraint**: a generation config's ``repetition_penalty`` (Qwen2.5-Instruct
  sets 1.05), ``no_repeat_ngram_size``, ``min_new_tokens``, ``bad_words_ids``,
  ``suppress_tokens``, ``sequence_bias`` and the like are not applied.
* **Stops**: every EOS id (the generation config's and the tokenizer's) ends a row as a token
  id, in every row of a batch; the official stop string ``"Question:"`` ends it as text; at
  most ``max_new_tokens``.
* **Text**: decoded without special tokens.

Hugging Face ``generate`` fills every setting a call leaves unset from ``model.generation_config``
(and in transformers 5 a setting whose neutral value is ``None``, such as ``bad_words_ids``,
cannot be given explicitly), so the HF engines (``builtin`` and lm-evaluation-harness's ``hf``)
run with a neutral generation config in its place (``greedy``). vLLM is given each setting in
the request's SamplingParams (``VLLM_GREEDY``), which lm-evaluation-harness builds from the task
alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# Hugging Face GenerationConfig fields of greedy decoding without penalties (the rest left
# unset, i.e. at transformers' neutral defaults)
HF_GREEDY = {"do_sample": False, "num_beams": 1, "repetition_penalty": 1.0,
             "no_repeat_ngram_size": 0, "min_length": 0}

# vLLM SamplingParams fields of the same decoding (vllm/sampling_params.py): temperature 0 is
# greedy; the text keeps no special token, as the HF engines decode it (lm-evaluation-harness
# asks vLLM to keep them by default)
VLLM_GREEDY = {"temperature": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0,
               "frequency_penalty": 0.0, "min_tokens": 0, "skip_special_tokens": True}

# what the HF engines keep of the model's generation config: its token ids, and how it caches
# (each engine gives its EOS and padding ids to generate itself)
KEPT = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id",
        "cache_implementation", "cache_config")


def ignored_settings(generation_config) -> dict:
    """The settings of a model's generation config that change decoding and that ``greedy``
    leaves out (those differing from transformers' defaults), e.g. a repetition penalty."""
    from transformers import GenerationConfig

    if generation_config is None:
        return {}
    # transformers 5 keeps the generation defaults apart from GenerationConfig(); 4.x has no
    # such helper and its GenerationConfig() holds them
    extra = getattr(GenerationConfig, "_get_default_generation_params", dict)
    defaults = {**GenerationConfig().to_dict(), **extra()}
    skip = set(KEPT) | {"max_length", "max_new_tokens", "transformers_version",
                        "_from_model_config", "use_cache", "return_dict_in_generate",
                        "output_scores", "output_logits", "output_attentions",
                        "output_hidden_states"}
    # sampling settings only matter when sampling: greedy ignores them anyway, name them once
    sampling = {"temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff",
                "eta_cutoff", "top_h"}
    out = {}
    for key, value in generation_config.to_dict().items():
        if key in skip or key.startswith("_") or value is None:
            continue
        if key in sampling and not generation_config.do_sample:
            continue
        if value != defaults.get(key):
            out[key] = value
    return out


@contextmanager
def greedy(model) -> Iterator[None]:
    """Within: ``model`` in evaluation mode with a generation config that decodes greedily
    (``HF_GREEDY``) and keeps only the token ids and cache settings of its own; after: its own
    generation config and training mode back."""
    from transformers import GenerationConfig

    own, was_training = getattr(model, "generation_config", None), model.training
    ignored = ignored_settings(own)
    if ignored:
        log.warning("the model's generation config sets %s: generate decodes greedily without "
                    "them, as the official MMLU-Pro script does", ignored)
    kept = {k: getattr(own, k, None) for k in KEPT}
    model.generation_config = GenerationConfig(
        **HF_GREEDY, **{k: v for k, v in kept.items() if v is not None})
    model.eval()
    try:
        yield
    finally:
        model.generation_config = own
        if was_training:
            model.train()
