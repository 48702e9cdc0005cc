"""lm-evaluation-harness as a generation engine of the ``generate`` metric
(``evaluate.generate_backend: lm_eval_hf | lm_eval_vllm``).

The harness gets the workflow's own prompts: the domain's materialised test items rendered into
the official MMLU-Pro prompt (``scoring.eval_generate``: k-shot demonstrations, dropped to fit the
context), written as a local JSON dataset in a temporary directory and read by a task defined
here (``generate_until``, zero-shot, the prompt as the whole context). Nothing is downloaded: the
task's data is a local file and the model is the job's. Decoding as every engine decodes
(``decoding``): greedy, no penalty whatever the model's generation config says, every EOS id
given as a token id (the harness itself knows only the tokenizer's EOS, as a stop string, which
ends a batch only once every row has reached it), the official stop string, at most
``max_new_tokens``. The harness returns text only; the answer is extracted and scored by
``mmlu_pro.score_output``, as for the built-in engine, so accuracies differ only where the
generated texts do.

* ``lm_eval_hf``: the harness's ``hf`` model type around the model the job loaded (same weights,
  dtype and device as the built-in engine; a LoRA adapter is merged as ``models.load`` merges
  it). Its batches: ``evaluate.batch_size`` rows, longest prompts first (``batch_tokens`` does
  not apply; ``lm_eval_args: {batch_size: auto}`` lets the harness size them). Arguments that
  only load a model by name (``peft``, ``revision``, ...) are refused: with a model object the
  harness ignores them.
* ``lm_eval_vllm``: the ``vllm`` model type, which loads the prepared model itself
  (``vllm_source``): a hub model from the offline cache at its pinned revision, a local or GGUF
  model from its directory (its tokenizer at the same pinned revision), a full fine-tune from its
  checkpoint, a LoRA checkpoint as its base with the adapter applied by vLLM (in the model's
  dtype, where ``models.load`` merges it in float32: near-ties may decode differently; vLLM's
  LoRA kernels take float16 or bfloat16 only, and ``max_lora_rank`` is the adapter's rank
  rounded up to one vLLM accepts: ``stsflow.config.engines``). ``sae_select`` checkpoints cannot
  be served by vLLM and are refused. The job's own copy of the model is moved to the CPU first,
  so that vLLM has the GPU to itself. vLLM is not a dependency of stsflow (it pins its own
  torch): install it in the GPU environment.

Prompt tokens: the harness tokenizes the prompt text in one piece where the built-in engine
concatenates the head's ids (BOS or the chat head) and the body's. Both are the same wherever the
tokenizer splits at the head's end, as it does at special tokens; rows record the harness's
prompt length and the job logs a warning for every prompt whose tokens differ. Both model types
cut the start of a prompt that leaves no room for ``max_new_tokens`` in the context; every
prompt is checked, in the harness's tokens, before anything runs, and one that does not fit is
refused (``scoring.eval_generate`` has already dropped demonstrations to fit).
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import tempfile
from pathlib import Path

from stsflow.evaluate.engines import Generation, GenerationJob, register_engine

log = logging.getLogger(__name__)

TASK = "stsflow_generate"


def _stops(tokenizer, job: GenerationJob) -> list[str]:
    """The official stop strings, and the text of every EOS id: the ids themselves end each row
    (``_hf_decoding``, ``_vllm_decoding``), but an EOS that is not a special token keeps its text
    in the decoded answer, where the built-in engine cuts before it."""
    stops = list(job.stop_strings)
    for i in job.eos_ids:
        text = tokenizer.decode([i], skip_special_tokens=False)
        if text and text not in stops:
            stops.append(text)
    return stops


def _hf_decoding(job: GenerationJob) -> dict:
    """Generation arguments of the harness's hf model type: greedy without penalties
    (``decoding.HF_GREEDY``), every EOS id as a token id. The harness passes the tokenizer's EOS
    as a stop *string* only, which its stopping criterion applies to the whole batch: a row that
    ends there would generate on while the others do, and keep the text after it."""
    from stsflow.evaluate.decoding import HF_GREEDY

    return {**HF_GREEDY, "eos_token_id": list(job.eos_ids)}


def _vllm_decoding(job: GenerationJob) -> dict:
    """vLLM SamplingParams of the same decoding (``decoding.VLLM_GREEDY``), every EOS id a stop
    token id."""
    from stsflow.evaluate.decoding import VLLM_GREEDY

    return {**VLLM_GREEDY, "stop_token_ids": list(job.eos_ids)}


def _task(data: Path, cache: Path, job: GenerationJob, stops: list[str], decoding: dict) -> dict:
    """The harness task over the rendered prompts: zero-shot, the prompt as the whole context,
    decoded with ``decoding``. Its own metric (exact match on the letter) is computed by the
    harness and not used."""
    return {
        "task": TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(cache)},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": lambda doc: doc["prompt"],
        "doc_to_target": lambda doc: doc["answer"],
        "target_delimiter": "",
        "num_fewshot": 0,
        "generation_kwargs": {"until": stops, "max_gen_toks": job.max_new_tokens,
                              "do_sample": False, "temperature": 0.0, **decoding},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean",
                         "higher_is_better": True}],
        "metadata": {"version": 1},
    }


def _prompt_ids(tokenizer, job: GenerationJob) -> list[list[int]]:
    """The prompts' tokens as the harness makes them (the text in one piece, no special tokens
    added), each checked against the context: the harness would cut the start of one that does
    not leave room for max_new_tokens, so such a prompt is refused before anything runs."""
    own = [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in job.texts]
    over = [i for i, ids in enumerate(own) if not job.fits(len(ids))]
    if over:
        raise ValueError(
            f"evaluate.max_context: lm-evaluation-harness tokenizes {len(over)} prompts to more "
            f"than {job.context_limit} tokens with max_new_tokens {job.max_new_tokens} (first: "
            f"prompt {over[0]}, {len(own[over[0]])} tokens, {len(job.prompts[over[0]])} as "
            "stsflow tokenizes it) and would cut their start. Fix: raise evaluate.max_context "
            "or lower evaluate.max_new_tokens")
    differ = sum(ids != list(ref) for ids, ref in zip(own, job.prompts))
    if differ:
        log.warning("lm-evaluation-harness tokenizes %d of %d prompts differently from the "
                    "built-in engine (head and body in one piece)", differ, len(job.texts))
    return own


def _run(lm, tokenizer, job: GenerationJob, decoding: dict) -> list[Generation]:
    """The job's prompts through the harness with ``lm`` (an lm_eval model); one Generation per
    prompt, in order."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    own = _prompt_ids(tokenizer, job)
    stops = _stops(tokenizer, job)
    with tempfile.TemporaryDirectory(prefix="stsflow-lm-eval-") as tmp:
        data = Path(tmp) / "prompts.jsonl"
        with data.open("w") as f:
            for i, text in enumerate(job.texts):
                f.write(json.dumps({"index": i, "prompt": text, "answer": ""}) + "\n")
        # the task is given whole: no need to index the harness's own thousands of tasks; no
        # seeds: the harness would reseed Python's, numpy's and torch's generators for the rest
        # of the process, and greedy decoding draws nothing
        out = simple_evaluate(model=lm,
                              tasks=[_task(data, Path(tmp) / "cache", job, stops, decoding)],
                              task_manager=TaskManager(include_defaults=False),
                              log_samples=True, bootstrap_iters=0, use_cache=None,
                              apply_chat_template=False, random_seed=None,
                              numpy_random_seed=None, torch_random_seed=None)
    texts: dict[int, str] = {}
    for sample in out["samples"][TASK]:
        texts[int(sample["doc"]["index"])] = sample["resps"][0][0]
    if sorted(texts) != list(range(len(job.texts))):
        raise RuntimeError(f"lm-evaluation-harness answered {len(texts)} of {len(job.texts)} "
                           "prompts")
    return [Generation(texts[i], None, None, len(ids)) for i, ids in enumerate(own)]


@register_engine("lm_eval_hf")
def lm_eval_hf(model, tokenizer, job: GenerationJob) -> list[Generation]:
    """The harness's ``hf`` model type around the job's model."""
    from lm_eval.models.huggingface import HFLM

    from stsflow.config.engines import lm_eval_args_problems
    from stsflow.evaluate.decoding import greedy

    # with a model object the harness silently ignores arguments it has no parameter for (they
    # would go to from_pretrained) and those that only load a model by name: refused here, before
    # any generation
    known = set(inspect.signature(HFLM.__init__).parameters) - {"self", "kwargs"}
    unknown = sorted(set(job.args) - known)
    if unknown:
        raise ValueError(f"evaluate.lm_eval_args.{unknown[0]}: not an argument of "
                         f"lm-evaluation-harness's hf model ({', '.join(unknown)}). Fix: remove "
                         f"it or use one of {', '.join(sorted(known))}")
    problems = lm_eval_args_problems("lm_eval_hf", job.args)
    if problems:
        raise ValueError("; ".join(problems))
    args = {"batch_size": job.batch_size, **job.args}
    # a copy: the harness may set the tokenizer's padding side or pad token
    tok = copy.deepcopy(tokenizer)
    # the harness's constructor already puts the model in evaluation mode: greedy() records the
    # training mode (and the generation config) before it, and restores both after
    with greedy(model):
        lm = HFLM(pretrained=model, tokenizer=tok, backend="causal", max_length=job.context_limit,
                  add_bos_token=False, **args)
        return _run(lm, tokenizer, job, _hf_decoding(job))


def vllm_source(model_dir, dtype: str | None = None) -> dict:
    """The vLLM model arguments that load a prepared model or fine-tuned checkpoint:
    ``pretrained`` (a directory or hub id), ``revision``, ``tokenizer`` with, where the tokenizer
    comes from the hub, its ``tokenizer_revision`` (the harness loads its own tokenizer, at
    ``main`` unless told), and for a LoRA checkpoint ``lora_local_path`` with ``max_lora_rank``
    (the adapter's rank rounded up to one vLLM accepts). A LoRA adapter in a ``dtype`` vLLM's
    kernels do not take, or of a rank it does not serve, is refused."""
    from stsflow.config.engines import vllm_lora_dtype_problem, vllm_lora_rank
    from stsflow.io.files import read_json
    from stsflow.mode import RunMethod
    from stsflow.models.load import _location, model_info

    info = model_info(model_dir)
    run = RunMethod.parse(info["method"]) if info.get("method") else None
    if run is not None and not run.posthoc and not run.registered.vllm:
        raise ValueError(
            f"evaluate.generate_backend: lm_eval_vllm cannot serve the {run.method} run in "
            f"{model_dir} (its checkpoint is not a model vLLM loads). Fix: use lm_eval_hf or "
            f"builtin, or drop {run.method} from finetune.methods")
    where, kw = _location(model_dir, info)
    revision = kw.get("revision")
    src = {"pretrained": str(where), "revision": revision, "tokenizer": None,
           "tokenizer_revision": revision}
    if info.get("adapter"):  # LoRA: the base, and the adapter (and tokenizer) saved with it
        problem = dtype and vllm_lora_dtype_problem(str(model_dir), dtype)
        if problem:
            raise ValueError(problem)
        rank = read_json(Path(model_dir) / "adapter_config.json")["r"]
        src |= {"lora_local_path": str(model_dir), "max_lora_rank": vllm_lora_rank(int(rank)),
                "tokenizer": str(model_dir), "tokenizer_revision": None}
    return src


@register_engine("lm_eval_vllm")
def lm_eval_vllm(model, tokenizer, job: GenerationJob) -> list[Generation]:
    """The harness's ``vllm`` model type, loading the prepared model itself."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise ModuleNotFoundError(
            "evaluate.generate_backend: lm_eval_vllm needs vLLM, which is not installed. Fix: "
            "pip install vllm in the GPU environment (a version built for its torch and CUDA), "
            "or use lm_eval_hf")
    if job.model_dir is None:
        raise ValueError("lm_eval_vllm loads the model itself and needs its prepared directory")
    from stsflow.config.engines import lm_eval_args_problems

    problems = lm_eval_args_problems("lm_eval_vllm", job.args)
    if problems:
        raise ValueError("; ".join(problems))
    from lm_eval.models.vllm_causallms import VLLM

    src = {k: v for k, v in vllm_source(job.model_dir, job.dtype).items() if v is not None}
    # the job's own copy is not used: vLLM gets the GPU memory it held, and the copy goes back
    # where it was afterwards (later metrics of the job run on it)
    import torch

    device = next(model.parameters()).device
    model.to("cpu")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        lm = VLLM(**src, dtype=job.dtype or "auto", max_model_len=job.context_limit,
                  add_bos_token=False, **{"batch_size": "auto", **job.args})
        out = _run(lm, tokenizer, job, _vllm_decoding(job))
        del lm
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        model.to(device)
    return out
