"""The built-in evaluation metrics, each registered once with its kind, direction and cost
(``stsflow.evaluate.registry``): ``nll`` (mean NLL of the reference answer), ``option_loglik``
(option log-likelihood accuracy) and ``generate`` (MMLU-Pro's official chain-of-thought
generation). What each computes, and every choice made, is in ``stsflow.evaluate.scoring``; this
module only registers them, importing nothing heavy, so that the workflow reads their costs while
it plans. A new metric is a module like this one (or a plugin's, ``stsflow.plugins``)."""

from __future__ import annotations

import math

from stsflow.evaluate.registry import MetricCost, register_metric


# the reference answer as one continuation of the item's teacher-forced pass
@register_metric("nll", kind="nll", higher_is_better=False, cost=lambda ev: MetricCost(calls=1))
def _run_nll(model, tokenizer, items, demos, *, segmenter, settings, subject, chat_template,
             model_dir=None, dtype=None):
    from stsflow.evaluate.scoring import eval_nll

    return eval_nll(model, tokenizer, items, segmenter=segmenter,
                    batch_size=settings.batch_size, batch_tokens=settings.batch_tokens)


def _option_loglik_cost(ev: dict) -> MetricCost:
    """The options (up to MMLU-Pro's 10, batch_size a call) as continuations of the item's
    teacher-forced pass; a k-shot variant runs the items again after its own prefix."""
    option_calls = math.ceil(10 / ev["batch_size"])
    own = ev["loglik_k_shot"] > 0
    return MetricCost(calls=option_calls + own * (1 + option_calls), passes=int(own))


@register_metric("option_loglik", kind="accuracy", higher_is_better=True, cost=_option_loglik_cost)
def _run_option_loglik(model, tokenizer, items, demos, *, segmenter, settings, subject,
                       chat_template, model_dir=None, dtype=None):
    from stsflow.evaluate.scoring import eval_option_loglik

    k = settings.loglik_k_shot
    return eval_option_loglik(model, tokenizer, items, demos[:k], segmenter=segmenter, k_shot=k,
                              batch_size=settings.batch_size,
                              batch_tokens=settings.batch_tokens)


@register_metric("generate", kind="accuracy", higher_is_better=True,
                 cost=lambda ev: MetricCost(new_tokens=ev["max_new_tokens"]))
def _run_generate(model, tokenizer, items, demos, *, segmenter, settings, subject,
                  chat_template, model_dir=None, dtype=None):
    from stsflow.evaluate.scoring import eval_generate

    # the raw official prompt unless evaluate.chat_template asks for the model's template
    k = settings.k_shot
    return eval_generate(model, tokenizer, items, demos[:k], subject=subject,
                         use_chat_template=settings.chat_template and chat_template,
                         max_new_tokens=settings.max_new_tokens,
                         batch_size=settings.batch_size, batch_tokens=settings.batch_tokens,
                         k_shot=k, max_context=settings.max_context,
                         engine=settings.generate_backend, engine_args=settings.lm_eval_args,
                         model_dir=model_dir, dtype=dtype)
