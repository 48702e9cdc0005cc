# Configuration, paths and the per-item slices of the config each rule receives.

from stsflow import config as stsconfig

CONFIG = stsconfig.validate(config, base_dir=".")
R = CONFIG["results"]
STS = CONFIG["sts"]
MODELS = CONFIG["models"]
SFTS = CONFIG["sft"]
DOMAINS = CONFIG["domains"]
FT = CONFIG["finetune"]
EVAL = CONFIG["evaluate"]
SEEDS = STS["seeds"]  # one seed drives both the ICL demonstration draw and fine-tuning
RUNS = [(method, seed) for method in FT["methods"] for seed in SEEDS] if FT["enabled"] else []
STS_VARIANTS = ["sts_act", "sts_icl", "sts_sq"]
if FT["enabled"]:
    STS_VARIANTS += [f"{v}_oracle" for v in STS_VARIANTS]
NAME = "[A-Za-z0-9][A-Za-z0-9_.-]*"


wildcard_constraints:
    model=NAME,
    sft=NAME,
    domain=NAME,
    corpus=NAME,
    layer=r"\d+",
    seed=r"\d+",
    n=r"\d+",
    kind="sft|domain",
    mode=r"plain|icl|icl-s\d+|tuned-(full|lora)-s\d+",
    method="full|lora",
    shift=r"s\d+|true-(full|lora)-s\d+",


def model_spec(w):
    """The slice of a model's config that its jobs depend on (not its layer list)."""
    m = MODELS[w.model]
    return {k: m[k] for k in ("source", "dtype", "device", "chat_template", "batch_size", "max_length")}


def sae_spec(w):
    return MODELS[w.model]["layers"][int(w.layer)]["sae"]


def sae_plan(w):
    """Corpora that train the SAE (none for pretrained SAEs) and that evaluate it (held out)."""
    sae = sae_spec(w)
    train = (sae["train"].get("corpora") or list(SFTS)) if "train" in sae else []
    return {"train": train, "eval": sae.get("eval_corpora") or train or list(SFTS)}


def sae_corpora(w):
    plan = sae_plan(w)
    names = list(dict.fromkeys(plan["train"] + plan["eval"]))
    return [("sft" if n in SFTS else "domain", n) for n in names]


def sae_corpus_files(w):
    return [f"{R}/data/sft/{n}.parquet" if k == "sft" else f"{R}/data/domain/{n}.test.parquet"
            for k, n in sae_corpora(w)]


def data_files(kind, corpus):
    if kind == "sft":
        return {"sft_items": f"{R}/data/sft/{corpus}.parquet"}
    return {"test": f"{R}/data/domain/{corpus}.test.parquet",
            "demos": f"{R}/data/domain/{corpus}.demos.parquet"}


def acts(model, layer, kind, corpus, mode, stats=False):
    ext = "stats.parquet" if stats else "parquet"
    return f"{R}/acts/{model}/L{layer}/{kind}/{corpus}/{mode}.{ext}"


def sts_parts(model, sft, shifts=None):
    shifts = shifts or [f"s{seed}" for seed in SEEDS]
    return [f"{R}/sts/{model}/L{layer}/{sft}/{shift}/N{n}/{domain}.parquet"
            for layer in MODELS[model]["layers"] for shift in shifts
            for n in STS["n_top"] for domain in DOMAINS]


def oracle_parts(model, sft):
    return sts_parts(model, sft, [f"true-{m}-s{s}" for m, s in RUNS])


def ckpt_dir(model, sft, method, seed):
    return f"{R}/finetune/{model}/{sft}/{method}-s{seed}"


def validation_outputs(model, sft):
    if not FT["enabled"]:
        return []
    return [f"{R}/tables/{model}/{sft}/{name}.parquet" for name in ("observed", "sts_oracle", "overlap")]


def has_observed(model, sft):
    return any(o["model"] == model and o["sft"] == sft for o in CONFIG["observed"])


def all_targets():
    out = []
    for model in MODELS:
        for sft in SFTS:
            out += [f"{R}/tables/{model}/{sft}/sts.parquet", f"{R}/tables/{model}/{sft}/sts.csv"]
            out += validation_outputs(model, sft)
            if has_observed(model, sft) or FT["enabled"]:
                out.append(f"{R}/reports/{model}/{sft}/summary.html")
    return out


# -- per-rule input and parameter functions -------------------------------------------------


def extract_inputs(w):
    model = f"{R}/models/{w.model}"
    if w.mode.startswith("tuned-"):  # the fine-tuned model on its own SFT queries (true shift)
        if w.kind != "sft":
            raise ValueError("tuned-model extraction is defined on SFT sets only")
        _, method, seed = w.mode.split("-")
        model = ckpt_dir(w.model, w.corpus, method, seed[1:])
    inputs = {"model": model, "sae": f"{R}/sae/{w.model}/L{w.layer}",
              **data_files(w.kind, w.corpus)}
    if w.mode != "plain":
        inputs["reference"] = acts(w.model, w.layer, w.kind, w.corpus, "plain")
    return inputs


def extract_settings(w):
    keys = ("sft_tokens", "t") if w.kind == "sft" else ("domain_tokens", "m")
    return {k: STS[k] for k in keys + ("feat_dtype", "row_group_rows")}


def recipe(w):
    return {k: v for k, v in FT.items() if k not in ("enabled", "methods")}


def report_inputs(w):
    inputs = {"sts": f"{R}/tables/{w.model}/{w.sft}/sts.parquet"}
    if FT["enabled"]:
        for name in ("observed", "sts_oracle", "overlap"):
            inputs[name] = f"{R}/tables/{w.model}/{w.sft}/{name}.parquet"
    return inputs
