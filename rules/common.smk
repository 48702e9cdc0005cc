# Configuration, paths and the per-item slices of the config each rule receives.

from stsflow import config as stsconfig
from stsflow.storage import package_versions

CONFIG = stsconfig.validate(config, base_dir=".")
R = CONFIG["results"]
STS = CONFIG["sts"]
MODELS = CONFIG["models"]
SFTS = CONFIG["sft"]
DOMAINS = CONFIG["domains"]
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
    mode=r"plain|icl|icl-s\d+",


def model_spec(w):
    """The slice of a model's config that its jobs depend on (not its layer list)."""
    m = MODELS[w.model]
    return {k: m[k] for k in ("source", "dtype", "device", "chat_template", "batch_size", "max_length")}


def sae_spec(w):
    return MODELS[w.model]["layers"][int(w.layer)]["sae"]


def sae_corpora(w):
    spec = sae_spec(w).get("train") or {}
    names = spec.get("corpora") or list(SFTS)
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


def sts_parts(model, sft):
    return [f"{R}/sts/{model}/L{layer}/{sft}/s{seed}/N{n}/{domain}.parquet"
            for layer in MODELS[model]["layers"] for seed in STS["seeds"]
            for n in STS["n_top"] for domain in DOMAINS]


def has_observed(model, sft):
    return any(o["model"] == model and o["sft"] == sft for o in CONFIG["observed"])


def all_targets():
    out = []
    for model in MODELS:
        for sft in SFTS:
            out += [f"{R}/tables/{model}/{sft}/sts.parquet", f"{R}/tables/{model}/{sft}/sts.csv"]
            if has_observed(model, sft):
                out.append(f"{R}/reports/{model}/{sft}/summary.html")
    return out
