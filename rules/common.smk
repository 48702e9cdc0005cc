# Configuration, paths and the per-item slices of the config each rule receives.

import math
import re
from pathlib import Path

from stsflow import config as stsconfig
from stsflow.config.saes import layer_saes, primary_sae, sae_roles, select_sites
from stsflow.config import resources
from stsflow.config.facts import model_shape, registry_id_facts, runs_on_cpu
from stsflow.config.settings import CHECKPOINT_KEYS, ExtractSettings, ModelSettings
from stsflow.mode import (
    FULL_METHOD_PATTERN,
    MODE_PATTERN,
    POSTHOC_METHOD_PATTERN,
    RUN_METHOD_PATTERN,
    SHIFT_PATTERN,
    TRAINED_METHOD_PATTERN,
    Mode,
    RunMethod,
    Shift,
    mixture_runs,
    posthoc_method,
    run_methods,
)
from stsflow.config.primary import resolve_primary
from stsflow.scores import PREDICTORS, SPACES, oracle_predictors, pretraining_predictors

CONFIG = stsconfig.validate(config, base_dir=".")
R = CONFIG["results"]
STS = CONFIG["sts"]
MODELS = CONFIG["models"]
SFTS = CONFIG["sft"]
DOMAINS = CONFIG["domains"]
FT = CONFIG["finetune"]
EVAL = CONFIG["evaluate"]
MIX = CONFIG["mixture"]
SEEDS = STS["seeds"]  # one seed drives both the ICL demonstration draw and fine-tuning
# (run method, seed) of every fine-tuning run; sae_select expands into one run per (k, select)
# and each data-mixture strategy (mixture:) one more run of its method
RUNS = (
    [(method, seed) for method in run_methods(FT) + mixture_runs(FT, MIX) for seed in SEEDS]
    if FT["enabled"]
    else []
)
# post-hoc pairs (posthoc:): tuned models trained elsewhere, each a run posthoc_<label> of its
# (model, SFT set) at one seed (its predictions' seed), imported rather than fine-tuned
POSTHOC = CONFIG["posthoc"]


def posthoc_seed(pair):
    return pair["seed"] if pair["seed"] is not None else SEEDS[0]


def runs(model, sft):
    """(run method, seed) of every tuned model of (model, sft): the fine-tuning runs, then the
    post-hoc pairs."""
    return RUNS + [
        (posthoc_method(label), posthoc_seed(pair))
        for label, pair in POSTHOC.items()
        if pair["model"] == model and pair["sft"] == sft
    ]


def posthoc_pair(method):
    """The posthoc: entry of a post-hoc run method, and its label."""
    label = RunMethod.parse(method).label
    return POSTHOC[label], label


def replay_domains(sft):
    """The domains a data-mixture run of ``sft`` replays: those with a pool split, but never
    the SFT set's own target domain (replay there would undo the gain fine-tuning is for)."""
    return [d for d in DOMAINS if DOMAINS[d]["pool"] is not None and d != SFTS[sft]["target"]]


# one column (and one scatter plot) per registered predictor; post-training ones: _oracle only
STS_VARIANTS = pretraining_predictors()
if FT["enabled"] or POSTHOC:
    STS_VARIANTS += [f"{v}_oracle" for v in oracle_predictors()]
NAME = "[A-Za-z0-9][A-Za-z0-9_.-]*"
# A layer's sae runs the model in its extractions; a sweep SAE encodes the residuals those kept.
# Config validation keeps the two sets of names apart, so the rules tell the jobs apart by name.
_PRIMARY, _SWEEP = sae_roles(MODELS)
PRIMARY_SAES = "|".join(re.escape(n) for n in sorted(_PRIMARY))
SWEEP_SAES = "|".join(re.escape(n) for n in sorted(_SWEEP)) or "(?!)"  # (?!): matches nothing


def sites(model):
    """(layer, SAE name) of every SAE of a model: each layer's sae, then its sweep."""
    return [
        (layer, name)
        for layer, entry in MODELS[model]["layers"].items()
        for name in layer_saes(entry)
    ]


wildcard_constraints:
    model=NAME,
    sft=NAME,
    domain=NAME,
    corpus=NAME,
    layer=r"\d+",
    sae=NAME,
    seed=r"\d+",
    n=r"\d+",
    kind="sft|domain",
    mode=MODE_PATTERN,
    method=RUN_METHOD_PATTERN,
    shift=SHIFT_PATTERN,


# -- artifact paths: each written once, here. Rules pass wildcard patterns ("{model}"), input
# functions pass values; scripts receive the files as named inputs.


def model_dir(model):
    return f"{R}/models/{model}"


def sae_dir(model, layer, sae):
    return f"{R}/sae/{model}/L{layer}/{sae}"


def hub_record(what, name):
    """What a download from the hub fetched (fetch_model, fetch_sae): repository, commit, files."""
    return f"{R}/hub/{what}/{name}.json"


def replay_file(model, domain):
    """The base model's greedy answers to a domain's pool items (mixture.replay)."""
    return f"{R}/replay/{model}/{domain}.parquet"


def sft_file(corpus):
    return f"{R}/data/sft/{corpus}.parquet"


def domain_file(corpus, split):
    """A domain's materialised ``test`` or ``demos`` split."""
    return f"{R}/data/domain/{corpus}.{split}.parquet"


def acts(model, layer, sae, kind, corpus, mode, stats=False):
    ext = "stats.parquet" if stats else "parquet"
    return f"{R}/acts/{model}/L{layer}/{sae}/{kind}/{corpus}/{mode}.{ext}"


def panel_dir(model, layer, sae, kind, corpus, mode):
    """The baseline predictors' statistics of an extraction (stsflow.features.panel)."""
    return f"{R}/acts/{model}/L{layer}/{sae}/{kind}/{corpus}/{mode}.panel"


def resid_dir(model, layer, sae, kind, corpus, mode):
    """The residuals a layer's own extraction keeps for its sweep (stsflow.features.residuals)."""
    return f"{R}/acts/{model}/L{layer}/{sae}/{kind}/{corpus}/{mode}.resid"


def grad_file(model, kind, corpus):
    """A corpus's projected mean low-rank gradient on the base model (stsflow.features.gradients)."""
    return f"{R}/grads/{model}/{kind}/{corpus}.parquet"


def shift_file(model, layer, sae, sft, shift, space="sae"):
    """A shift vector: predicted (``s<seed>``) or true (``true-<method>-s<seed>``), of the SAE's
    features or of another feature space of the panel (stsflow.scores.SPACES)."""
    suffix = "" if space == "sae" else f".{space}"
    return f"{R}/shift/{model}/L{layer}/{sae}/{sft}/{shift}{suffix}.parquet"


def shift_files(model, layer, sae, sft, shift, unaligned=False):
    """Named shift files of every feature space, as the shift rules write them; a predicted
    shift also has the authors' unaligned row-by-row one (stsflow.scores.unaligned)."""
    spaces = [*SPACES, "unaligned"] if unaligned else SPACES
    return {space: shift_file(model, layer, sae, sft, shift, space) for space in spaces}


def sts_part(model, layer, sae, sft, shift, n, domain):
    return f"{R}/sts/{model}/L{layer}/{sae}/{sft}/{shift}/N{n}/{domain}.parquet"


def ckpt_dir(model, sft, method, seed):
    return f"{R}/finetune/{model}/{sft}/{method}-s{seed}"


def history_file(model, sft, method, seed):
    """A fine-tuning run's loss history (its metadata: recipe, sample, answers cut)."""
    return ckpt_dir(model, sft, method, seed) + ".history.parquet"


def eval_file(model, run, domain):
    """Per-item evaluation of a domain: ``run`` is ``base`` or tuned_run(...)."""
    return f"{R}/eval/{model}/{run}/{domain}.parquet"


def reps_file(model, run, domain):
    """The mean residual of a domain's queries at every layer, as an evaluation run recorded it
    (stsflow.features.reps): ``run`` is ``base`` or tuned_run(...)."""
    return f"{R}/eval/{model}/{run}/{domain}.reps.parquet"


def tuned_run(sft, method, seed):
    """The evaluation run name of a fine-tuned model."""
    return f"{sft}/{method}-s{seed}"


def table(model, sft, name, ext="parquet"):
    return f"{R}/tables/{model}/{sft}/{name}.{ext}"


def cards_file(model, layer, sae, sft, seed):
    """Feature cards of one shift vector's top dimensions, predicted and true (report.cards)."""
    return f"{R}/cards/{model}/L{layer}/{sae}/{sft}/s{seed}.parquet"


def report_file(model, sft, name):
    return f"{R}/reports/{model}/{sft}/{name}"


MANIFEST = f"{R}/manifest.json"


# Keys added once runs existed, passed to the jobs only when they do something: at the value that
# means "as before" (null, the built-in engine, no arguments), they leave the parameters
# (Snakemake's rerun trigger) of every existing job as they were.
OPTIONAL_KEYS = {
    "batch_tokens": None,
    "micro_batch_tokens": None,
    "generate_backend": "builtin",
    "lm_eval_args": {},
    "b_dec_init": "zeros",
}


def passed(section):
    """A config slice as the jobs receive it: the optional keys left out while inactive."""
    return {k: v for k, v in section.items() if not (k in OPTIONAL_KEYS and v == OPTIONAL_KEYS[k])}


def model_spec(w):
    """The slice of a model's config that its jobs depend on (ModelSettings: not its layers)."""
    return passed({k: MODELS[w.model][k] for k in ModelSettings.keys()})


# Local scheduling of the jobs that run a model. On a GPU a job takes one unit of the `gpu`
# resource (the local profile allows one at a time: two models never share a GPU) and two
# threads. On a CPU it takes one core and no GPU unit, so the scheduler runs one job per core:
# most of a small model's job is process start, imports and loading, which do not use a second
# thread (measured on 2 cores: 10 extractions in 99 s side by side against 167 s one after the
# other). The SLURM profile sets both itself (set-threads, set-resources).
def model_threads(w):
    return 1 if runs_on_cpu(MODELS[w.model]["device"]) else 2


# Fine-tuning is the exception: two threads on a CPU too. Its backward passes use them (one
# thread beside other jobs took 964 s against 413 s alone with two, embedded default on 2 cores),
# and a fixed count keeps a run's fine-tuned weights the same whatever the machine's core count
# (float sums in torch's kernels depend on the thread count).
FINETUNE_THREADS = 2

# Scheduling on a machine with few cores (Snakemake's scheduler maximises the sum of the
# priorities of the jobs it starts). The STS table is the workflow's prediction, made before any
# fine-tuning, so the jobs it needs (materialisations, model, SAEs, extractions, encodings,
# gradients, shifts, scores) outrank the rest: a freed core goes to them before an evaluation. The SAEs head the chain (the
# layer's own SAE before its extractions; ranked with the rest, the sweep's SAE and the
# gradients went first). Fine-tuning needs two cores free at once, which happens only when no
# one-core job is waiting for a freed core; it then outranks two evaluations but no chain job
# (10 < 20), so it never delays the table. Measured on 2 cores (README): the table 8.5 minutes
# into the workflow, fine-tuning from 11; before, with only the SAEs and extractions ranked, the
# table came 11.5 minutes in, as the evaluations and gradients interleaved with the chain.
STS_CHAIN_PRIORITY = 20
SAE_PRIORITY = 25
FINETUNE_PRIORITY = 10


def gpu_units(w):
    return 0 if runs_on_cpu(MODELS[w.model]["device"]) else 1


# -- memory requests of the model jobs, from the model's shape (stsflow.config.resources) --------


def _shape(model, _cache={}):
    if model not in _cache:  # read once per Snakemake process (a GGUF header, a config.json)
        _cache[model] = model_shape(MODELS[model], Path("."))[0]
    return _cache[model]


def _sae_width(w):
    """The width of the SAE a job trains or encodes with, where the config says it (a trained
    SAE's, a registry id's that names it; else None)."""
    sae = layer_saes(MODELS[w.model]["layers"][int(w.layer)])[w.sae]
    if "train" in sae:
        return sae["train"]["width"]
    if "registry" in sae:
        hidden = _shape(w.model).hidden_size if _shape(w.model) else None
        return registry_id_facts(**sae["registry"], hidden_size=hidden)["width"]
    return None


def _trains_sae(w):
    return "train" in layer_saes(MODELS[w.model]["layers"][int(w.layer)])[w.sae]


def _merges_adapter(method):
    # a LoRA checkpoint (a mixture's too), and a post-hoc PEFT adapter, are merged on load
    if method is None:
        return False
    run = RunMethod.parse(method)
    if run.posthoc:
        return "peft" in POSTHOC[run.label]["tuned"]
    return run.method in ("lora", "grpo")


def _ft_step(method):
    """The planning step of a run method: sae_select trains small maps on a frozen model, as LoRA
    does; a method without its own estimate is planned as full fine-tuning (the upper bound)."""
    base = RunMethod.parse(method).method
    return {"lora": "lora", "sae_select": "lora", "grpo": "lora"}.get(base, "full")


def ft_shards(method):
    """The processes (GPUs, FSDP ranks) of a run: finetune.processes for full fine-tuning, one
    for every other method (stsflow.finetune.distributed)."""
    return FT["processes"] if RunMethod.parse(method).method == "full" else 1


def _eval_job(w):
    gen = EVAL["max_new_tokens"] if "generate" in EVAL["metrics"] else 0
    return dict(
        step="inference",
        batch=EVAL["batch_size"],
        new_tokens=gen,
        merges_adapter=_merges_adapter(getattr(w, "method", None)),
    )


# The step and batch of one job of each model rule. Tokens per sequence are the model's
# max_length unless the step says (fine-tuning uses finetune.max_length).
MODEL_JOBS = {
    "extract": lambda w: dict(
        step="extract",
        sae_width=_sae_width(w),
        merges_adapter=_merges_adapter(Mode.parse(w.mode).method),
    ),
    "encode": lambda w: dict(step="encode", sae_width=_sae_width(w)),
    "gradients": lambda w: dict(step="gradients", batch=1),
    "prepare_sae": lambda w: dict(step="sae", sae_width=_sae_width(w), trains_sae=_trains_sae(w)),
    "finetune": lambda w: dict(
        step=_ft_step(w.method),
        batch=FT["micro_batch_size"],
        tokens=FT["max_length"],
        checkpointing=FT["gradient_checkpointing"],
        shards=ft_shards(w.method),
    ),
    "evaluate_base": _eval_job,  # evaluate_tuned inherits its resources (use rule ... with)
    # the LM head over a few SAE decoder rows (logit lens): the weights, nothing per token
    "cards": lambda w: dict(step="inference", batch=1, tokens=1),
    # greedy answers to a domain's pool items: generation, as the generate metric plans it
    "replay": lambda w: dict(
        step="inference", batch=MIX["batch_size"], new_tokens=MIX["max_new_tokens"]
    ),
}


def job_need(rule, w):
    """What one job of a model rule needs (resources.Need), or None when the model's shape is
    unknown offline and the config gives none."""
    shape = _shape(w.model)
    if shape is None:
        return None
    m = MODELS[w.model]
    job = {"batch": m["batch_size"], "tokens": m["max_length"] or 1024, **MODEL_JOBS[rule](w)}
    return resources.need(
        job.pop("step"),
        shape,
        dtype=m["dtype"],
        # only `device: cpu` puts the working memory on the host: `auto` is planned for a GPU
        # (the machine that plans a cluster run, a login node, may have none)
        device_is_cpu=m["device"] == "cpu",
        **job,
    )


def host_request(rule, fallback):
    """Host memory request of a model rule, grown with the retry attempt; ``fallback`` (MB) when
    the model's shape is unknown."""

    def request(wc, attempt):
        got = job_need(rule, wc)
        return (got.host_mb if got else fallback) * attempt

    return request


def gpu_request(rule):
    """GPU memory one job needs on its device (MB; 0 when unknown): planning figure for
    `stsflow plan`, and a limit when a run passes `--resources gpu_mem_mb=...`."""
    return lambda wc: job_need(rule, wc).gpu_mb if job_need(rule, wc) else 0


# -- runtime requests of the model jobs, from the model's shape and the job's tokens -------------
# (stsflow.config.resources.work). Token counts come from the config where it fixes them
# (extraction budgets, an SAE's training tokens) and from the materialised data otherwise
# (characters of the job's Parquet input): Snakemake evaluates a job's resources again once
# its inputs exist, so a submitted job carries the data's figure. Before the data exists (a dry
# run, `stsflow plan`) a dataset's max_items bounds it, else the rule's fixed request stands.

SPEED = resources.Speed.from_config(CONFIG["throughput"])


def _per_item(path, cap, rows_cap):
    """(items, tokens per item) of a Parquet input: the file's figures when it exists, else
    ``rows_cap`` items of ``cap`` tokens (None: unknown)."""
    size = resources.text_size(path)
    if size is None:
        return (rows_cap, cap) if rows_cap else (None, None)
    rows, chars = size
    return rows, min(cap, resources.tokens_per_item(rows, chars))


def _sae_entry(w):
    return layer_saes(MODELS[w.model]["layers"][int(w.layer)])[w.sae]


def _tuned(w):
    """A job on a fine-tuned model loads float32 weights (a full fine-tune's checkpoint, the
    base a LoRA adapter is merged into)."""
    if hasattr(w, "method"):
        return True
    return hasattr(w, "mode") and Mode.parse(w.mode).method is not None


def _work_extract(w, input):
    tokens = STS["sft_tokens"] if w.kind == "sft" else STS["domain_tokens"]
    return dict(
        step="extract",
        tokens=tokens,
        layer=int(w.layer),
        sae_width=_sae_width(w),
        float32_weights=_tuned(w),
    )


def _work_encode(w, input):
    tokens = STS["sft_tokens"] if w.kind == "sft" else STS["domain_tokens"]
    return dict(step="encode", tokens=tokens, sae_width=_sae_width(w))


def _work_gradients(w, input):
    # the job takes at most grad_examples records (sft: a sample; a domain: its worked
    # examples), cut to the model's max_length
    examples = STS["grad_examples"]
    cap = MODELS[w.model]["max_length"] or 1024
    rows, per = _per_item(input.data, cap, examples)
    n = min(examples, rows)
    return dict(step="gradients", tokens=n * per, calls=n)


def _work_prepare_sae(w, input):
    sae = _sae_entry(w)
    train = sae["train"]["tokens"] if "train" in sae else 0
    return dict(
        step="sae",
        tokens=train,
        layer=int(w.layer),
        eval_tokens=sae["eval_tokens"],
        sae_width=_sae_width(w) if "train" in sae else None,
    )


def _work_finetune(w, input):
    caps = [x for x in (SFTS[w.sft]["max_items"], FT["max_items"]) if x]
    rows, per = _per_item(input.sft_items, FT["max_length"], min(caps) if caps else None)
    if rows is None:
        return None
    n = min(rows, FT["max_items"] or rows)
    batch = FT["batch_size"]
    steps = FT["epochs"] * math.ceil(n / batch)  # as finetune.train.total_steps counts them
    examples = FT["epochs"] * n
    if FT["max_steps"] and FT["max_steps"] < steps:
        examples = FT["max_steps"] * min(batch, n)
    return dict(  # each of a sharded run's ranks takes its share of the micro-batches
        step=_ft_step(w.method),
        tokens=math.ceil(examples * per / ft_shards(w.method)),
        checkpointing=FT["gradient_checkpointing"],
    )


def _work_evaluate(w, input):
    m = MODELS[w.model]
    rows, per = _per_item(input.test, m["max_length"] or 1024, DOMAINS[w.domain]["max_items"])
    if rows is None:
        return None
    metrics = EVAL["metrics"]
    # the teacher-forced pass (evaluate.forced) runs every item once: its query (the layer
    # means, always recorded), then its options (up to MMLU-Pro's 10, batch_size a call) and
    # its reference answer as continuations; a k-shot option log-likelihood runs the items
    # again after its own prefix
    own = "option_loglik" in metrics and EVAL["loglik_k_shot"] > 0
    passes = 1 + own
    option_calls = math.ceil(10 / EVAL["batch_size"]) if "option_loglik" in metrics else 0
    calls = rows * (1 + option_calls + ("nll" in metrics) + own * (1 + option_calls))
    job = dict(
        step="inference",
        tokens=passes * rows * per,
        calls=calls,
        batch=EVAL["batch_size"],
        float32_weights=_tuned(w),
    )
    if "generate" in metrics:
        _, demo = _per_item(input.demos, m["max_length"] or 1024, EVAL["k_shot"] or 1)
        new = EVAL["max_new_tokens"]
        context = min(EVAL["k_shot"] * (demo or 0) + per, max(EVAL["max_context"] - new, 1))
        job.update(gen_items=rows, new_tokens=new, context=context)
    return job


RUNTIME_WORK = {
    "extract": _work_extract,
    "encode": _work_encode,
    "gradients": _work_gradients,
    "prepare_sae": _work_prepare_sae,
    "finetune": _work_finetune,
    "evaluate_base": _work_evaluate,  # evaluate_tuned inherits it (use rule ... with)
    # loading the model and a few hundred decoder rows through its LM head
    "cards": lambda w, input: dict(step="inference", tokens=CONFIG["cards"]["n_top"]),
    "replay": lambda w, input: None,  # no estimate yet: the rule's fallback (60 minutes)
}


def job_minutes(rule, w, input, attempt=1):
    """Runtime request of one job of a model rule (minutes), or None when its model's shape
    or its token count is unknown."""
    shape = _shape(w.model)
    job = RUNTIME_WORK[rule](w, input) if shape is not None else None
    if job is None:
        return None
    m = MODELS[w.model]
    on_cpu = m["device"] == "cpu"
    threads = FINETUNE_THREADS if rule == "finetune" else 1
    return resources.runtime_min(
        resources.work(job.pop("step"), shape, dtype=m["dtype"], **job),
        shape,
        SPEED,
        device_is_cpu=on_cpu,
        threads=threads,
        attempt=attempt,
    )


def runtime_request(rule, fallback):
    """Runtime request of a model rule in minutes, grown with the retry attempt; ``fallback``
    when the model's shape or the job's tokens are unknown."""

    def request(wc, input, attempt):
        got = job_minutes(rule, wc, input, attempt)
        return got if got is not None else fallback * attempt

    return request


def sae_spec(w):
    """An SAE's config, without its name (the name is in the path; renaming reruns nothing
    that the path does not)."""
    spec = layer_saes(MODELS[w.model]["layers"][int(w.layer)])[w.sae]
    spec = {k: v for k, v in spec.items() if k != "name"}
    return {**spec, "train": passed(spec["train"])} if "train" in spec else spec


def sae_where(w):
    """The config entry of an SAE, as errors name it: by name, not by list position (a param:
    reordering the sweep must not prepare anything again)."""
    own = primary_sae(MODELS[w.model]["layers"][int(w.layer)])
    where = "sae" if w.sae == own else f"sweep[name={w.sae}]"
    return f"models.{w.model}.layers.{w.layer}.{where}"


def sae_plan(w):
    """Corpora that train the SAE (none for pretrained SAEs) and that evaluate it (held out)."""
    sae = sae_spec(w)
    train = (sae["train"].get("corpora") or list(SFTS)) if "train" in sae else []
    return {"train": train, "eval": sae.get("eval_corpora") or train or list(SFTS)}


def sae_corpora(w):
    plan = sae_plan(w)
    names = list(dict.fromkeys(plan["train"] + plan["eval"]))
    return [("sft" if n in SFTS else "domain", n) for n in names]


def model_inputs(w):
    """prepare_model's input: a hub model's download (fetch_model), done where the network is."""
    if "hf" not in MODELS[w.model]["source"]:
        return {}
    return {"hub": hub_record("models", w.model)}


def on_hub(sae):
    return "registry" in sae or "hub" in sae


def sae_inputs(w):
    """Named inputs of prepare_sae: the model, a hub SAE's download (fetch_sae), and each corpus
    that trains or evaluates the SAE as "<kind>:<name>" (the script reads kind and name from the
    key, never from list order)."""
    inputs = {"model": model_dir(w.model)}
    if on_hub(sae_spec(w)):
        inputs["hub"] = hub_record("sae", f"{w.model}/L{w.layer}/{w.sae}")
    for kind, name in sae_corpora(w):
        inputs[f"{kind}:{name}"] = sft_file(name) if kind == "sft" else domain_file(name, "test")
    return inputs


def data_files(kind, corpus):
    if kind == "sft":
        return {"sft_items": sft_file(corpus)}
    return {"test": domain_file(corpus, "test"), "demos": domain_file(corpus, "demos")}


def sts_parts(model, sft, shifts=None):
    shifts = shifts or [str(Shift(seed)) for seed in SEEDS]
    return [
        sts_part(model, layer, sae, sft, shift, n, domain)
        for layer, sae in sites(model)
        for shift in shifts
        for n in STS["n_top"]
        for domain in DOMAINS
    ]


def oracle_parts(model, sft):
    return sts_parts(model, sft, [str(Shift(s, m)) for m, s in runs(model, sft)])


def validation_outputs(model, sft):
    if not runs(model, sft):
        return []
    return [table(model, sft, name) for name in ("observed", "sts_oracle", "overlap")]


def has_observed(model, sft):
    return any(o["model"] == model and o["sft"] == sft for o in CONFIG["observed"])


def all_targets():
    out = []
    for model in MODELS:
        for sft in SFTS:
            out += [
                table(model, sft, "sts"),
                table(model, sft, "sts", "csv"),
                table(model, sft, "coverage"),
            ]
            out += validation_outputs(model, sft)
            # the feature cards, with or without observed Δ (`stsflow cards` reads them)
            out += [
                cards_file(model, layer, sae, sft, seed)
                for layer, sae in sites(model)
                for seed in SEEDS
            ]
            if has_observed(model, sft) or runs(model, sft):
                out.append(report_file(model, sft, "summary.html"))
    return out


# -- per-rule input and parameter functions -------------------------------------------------


def _paired_inputs(w):
    """A paired run's references: the plain run of the same corpus with the same SAE."""
    if not Mode.parse(w.mode).paired:
        return {}
    plain = str(Mode.plain())
    return {
        "reference": acts(w.model, w.layer, w.sae, w.kind, w.corpus, plain),
        "panel_ref": panel_dir(w.model, w.layer, w.sae, w.kind, w.corpus, plain),
    }


def extract_inputs(w):
    mode = Mode.parse(w.mode)
    mode.check_corpus(w.kind)
    model = model_dir(w.model)
    inputs = {"sae": sae_dir(w.model, w.layer, w.sae)}
    if mode.tuned_model:  # the fine-tuned model on its own SFT queries (true shift)
        inputs.update(tuned_model_inputs(w.model, w.corpus, mode.method, mode.seed))
    else:
        inputs["model"] = model
    return {**inputs, **data_files(w.kind, w.corpus), **_paired_inputs(w)}


def encode_inputs(w):
    """A sweep SAE's extraction: the residuals its layer's own extraction kept."""
    Mode.parse(w.mode).check_corpus(w.kind)
    own = primary_sae(MODELS[w.model]["layers"][int(w.layer)])
    return {
        "residuals": resid_dir(w.model, w.layer, own, w.kind, w.corpus, w.mode),
        "sae": sae_dir(w.model, w.layer, w.sae),
        **_paired_inputs(w),
    }


def sts_inputs(w):
    """Named inputs of the sts rule: the shift files of every space (for a predicted shift, the
    unaligned one too), the domain's statistics and panels, the SFT set's panel, the two
    corpora's mean gradients."""
    shift = Shift.parse(w.shift)
    inputs = {
        f"shift_{space}": path
        for space, path in shift_files(
            w.model, w.layer, w.sae, w.sft, w.shift, unaligned=not shift.true
        ).items()
    }
    plain, icl = str(Mode.plain()), str(Mode.domain_icl())
    at = (w.model, w.layer, w.sae)
    inputs.update(
        plain=acts(*at, "domain", w.domain, plain, stats=True),
        icl=acts(*at, "domain", w.domain, icl, stats=True),
        plain_panel=panel_dir(*at, "domain", w.domain, plain),
        icl_panel=panel_dir(*at, "domain", w.domain, icl),
        sft_panel=panel_dir(*at, "sft", w.sft, plain),
        sft_grad=grad_file(w.model, "sft", w.sft),
        domain_grad=grad_file(w.model, "domain", w.domain),
    )
    if shift.true:  # post-training predictors: the domain before and after this fine-tuning
        inputs.update(
            reps_base=reps_file(w.model, "base", w.domain),
            reps_tuned=reps_file(w.model, tuned_run(w.sft, shift.method, shift.seed), w.domain),
        )
    return inputs


def extract_settings(w):
    return ExtractSettings.params(w.kind, STS)


def corpus_spec(corpora, name):
    """A corpus's own config plus the seed of its max_items sample (an SFT set's target domain
    is read by the report, not by materialisation)."""
    spec = {k: v for k, v in corpora[name].items() if k not in ("target", "pool")}
    return dict(spec, sample_seed=STS["sample_seed"])


def pool_spec(w):
    """A domain's pool split as a corpus of its own (materialize_pool), read whole."""
    d = DOMAINS[w.corpus]
    return {
        "source": d["pool"],
        "schema": d["schema"],
        "fields": d["fields"],
        "max_items": None,
        "sample_seed": STS["sample_seed"],
    }


def pool_against(w):
    """The sources a pool must share no question with: the domain's whole test source (not only
    its max_items sample) and its demonstrations."""
    return {"test": DOMAINS[w.corpus]["test"], "demos": DOMAINS[w.corpus]["demos"]}


def mixture_site(model):
    """The data mixture's predictor, layer, SAE, N and metric: mixture: where given, else the
    report's pre-declared primary analysis (resolved for the model)."""
    keys = ("predictor", "layer", "sae", "n_top", "metric")
    primary = dict(CONFIG["report"]["primary"])
    primary.update({k: MIX[k] for k in keys if MIX[k] is not None})
    return resolve_primary(primary, MODELS[model]["layers"], EVAL["metrics"], STS["n_top"])


def mixture_recipe(w):
    """What a data-mixture run depends on: its budget and the domains with replay, and only
    its own strategy's inputs (sts: the predictor's site; oracle: the metric)."""
    strategy = RunMethod.parse(w.method).mix
    site = mixture_site(w.model)
    out = {"budget": MIX["budget"], "domains": replay_domains(w.sft), "keep_cut": MIX["keep_cut"]}
    if strategy != "uniform":
        out["top_k"] = MIX["top_k"]
    if strategy == "sts":
        out.update({k: site[k] for k in ("predictor", "layer", "sae", "n_top")})
    if strategy == "oracle":
        out["metric"] = site["metric"]
    return out


def recipe(w):
    out = passed(
        {
            k: v
            for k, v in FT.items()
            if k not in ("enabled", "methods", "sae_select", "grpo", "processes")
            and k not in CHECKPOINT_KEYS  # how a run checkpoints: read by its script
        }
    )
    if FT["max_items"]:  # only then does the sample seed matter to fine-tuning
        out["sample_seed"] = STS["sample_seed"]
    if RunMethod.parse(w.method).method == "sae_select":  # only its runs depend on its sites
        sites = select_sites(MODELS[w.model], FT["sae_select"])
        out["sae_select"] = {"layers": [l for l, _ in sites], "saes": [s for _, s in sites]}
    if ft_shards(w.method) > 1:  # a sharded full run's ranks (only then: others keep theirs)
        out["processes"] = ft_shards(w.method)
    if RunMethod.parse(w.method).method == "grpo":  # only its runs depend on the RL recipe
        out["grpo"] = FT["grpo"]
    if RunMethod.parse(w.method).mix is not None:
        out["mixture"] = mixture_recipe(w)
    return out


def finetune_inputs(w):
    """The base model and the SFT set; a sae_select run also reads, at each of its layers, the
    SAE and the seed's predicted shift (its top-K dimensions)."""
    inputs = {"model": model_dir(w.model), "sft_items": sft_file(w.sft)}
    if RunMethod.parse(w.method).method == "sae_select":
        for layer, sae in select_sites(MODELS[w.model], FT["sae_select"]):
            inputs[f"sae_L{layer}"] = sae_dir(w.model, layer, sae)
            inputs[f"shift_L{layer}"] = shift_file(
                w.model, layer, sae, w.sft, str(Shift(int(w.seed)))
            )
    run = RunMethod.parse(w.method)
    if run.mix is not None:  # the replay, and what its strategy weighs the domains by
        site = mixture_site(w.model)
        plain = tuned_run(w.sft, str(run.unmixed), w.seed)
        for d in replay_domains(w.sft):
            inputs[f"replay/{d}"] = replay_file(w.model, d)
            if run.mix == "sts":
                inputs[f"sts/{d}"] = sts_part(
                    w.model,
                    site["layer"],
                    site["sae"],
                    w.sft,
                    str(Shift(int(w.seed))),
                    site["n_top"],
                    d,
                )
            if run.mix == "oracle":
                inputs[f"eval_base/{d}"] = eval_file(w.model, "base", d)
                inputs[f"eval_plain/{d}"] = eval_file(w.model, plain, d)
    return inputs


def import_inputs(w):
    """The base model, and the tuned model's files (a changed file imports it again)."""
    pair, label = posthoc_pair(w.method)
    if (w.model, w.sft, int(w.seed)) != (pair["model"], pair["sft"], posthoc_seed(pair)):
        raise ValueError(
            f"posthoc.{label} pairs model {pair['model']!r} and SFT set {pair['sft']!r} at seed "
            f"{posthoc_seed(pair)}; {w.model}/{w.sft}/{w.method}-s{w.seed} is not it"
        )
    ((kind, spec),) = pair["tuned"].items()
    inputs = {"model": model_dir(w.model)}
    if kind == "gguf":
        inputs["tuned"] = spec["path"]
    elif kind != "hf":  # the files, not the folder: a file overwritten in place counts
        where = Path(spec["path"])
        files = sorted(where.glob("*.safetensors")) + sorted(where.glob("*.json"))
        inputs["tuned"] = [str(f) for f in files] or [str(where)]
    return inputs


def evaluate_tuned_inputs(w):
    return {
        **tuned_model_inputs(w.model, w.sft, w.method, w.seed),
        "test": domain_file(w.domain, "test"),
        "demos": domain_file(w.domain, "demos"),
    }


def tuned_model_inputs(model, sft, method, seed):
    """What loading a fine-tuned model reads: its checkpoint, the base (a LoRA adapter is merged
    into it, sae_select's maps attached to it) and, for sae_select, the SAE of every map."""
    inputs = {"model": ckpt_dir(model, sft, method, seed), "base": model_dir(model)}
    if RunMethod.parse(method).method == "sae_select":
        for layer, sae in select_sites(MODELS[model], FT["sae_select"]):
            inputs[f"select_sae_L{layer}"] = sae_dir(model, layer, sae)
    return inputs


def coverage_inputs(w):
    """Named inputs of the coverage table: each corpus's plain extraction (first layer: the query
    selection does not depend on the layer) and each fine-tuning run's history."""
    layer = min(MODELS[w.model]["layers"])
    at = (w.model, layer, primary_sae(MODELS[w.model]["layers"][layer]))
    plain = str(Mode.plain())
    inputs = {f"sft:{w.sft}": acts(*at, "sft", w.sft, plain, stats=True)}
    for d in DOMAINS:
        inputs[f"domain:{d}"] = acts(*at, "domain", d, plain, stats=True)
    for m, s in RUNS:
        inputs[f"ft:{m}-s{s}"] = history_file(w.model, w.sft, m, s)
    return inputs


def report_inputs(w):
    inputs = {"sts": table(w.model, w.sft, "sts"), "coverage": table(w.model, w.sft, "coverage")}
    for layer, sae in sites(w.model):  # the SAEs' quality figures and warnings
        inputs[f"sae_L{layer}/{sae}"] = sae_dir(w.model, layer, sae)
    if runs(w.model, w.sft):
        for name in ("observed", "sts_oracle", "overlap"):
            inputs[name] = table(w.model, w.sft, name)
        # trainable parameters and time of each run (the methods table)
        for m, s in runs(w.model, w.sft):
            inputs[f"history/{m}-s{s}"] = history_file(w.model, w.sft, m, s)
    inputs["cards"] = [
        cards_file(w.model, layer, sae, w.sft, seed)
        for layer, sae in sites(w.model)
        for seed in SEEDS
    ]
    # provenance: the model's identity and each dataset's source, revision and sample
    inputs["model"] = model_dir(w.model)
    inputs[f"data/sft {w.sft}"] = sft_file(w.sft)
    for d in DOMAINS:
        inputs[f"data/domain {d}"] = domain_file(d, "test")
        inputs[f"data/demos {d}"] = domain_file(d, "demos")
    return inputs


def cards_inputs(w):
    """A seed's predicted shift, the true shift of every fine-tuning run of that seed, and the
    plain-query shards of the SFT set and of every domain (the contexts and frequencies)."""
    inputs = {
        "model": model_dir(w.model),
        "sae": sae_dir(w.model, w.layer, w.sae),
        "shifts": [shift_file(w.model, w.layer, w.sae, w.sft, str(Shift(int(w.seed))))]
        + [
            shift_file(w.model, w.layer, w.sae, w.sft, str(Shift(int(w.seed), m)))
            for m, seed in runs(w.model, w.sft)
            if seed == int(w.seed)
        ],
        "sft_shard": acts(w.model, w.layer, w.sae, "sft", w.sft, "plain"),
    }
    for d in DOMAINS:
        inputs[f"domain/{d}"] = acts(w.model, w.layer, w.sae, "domain", d, "plain")
    return inputs
