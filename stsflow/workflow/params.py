"""The ``params:`` of the rules: each job's slice of the config, no more (a rule's parameters are
Snakemake's rerun trigger, so a per-item job never receives the list of all domains, and adding a
domain reruns nothing else). Each slice is built by the settings class that rebuilds it in the
job (``stsflow.config.settings``); this module only looks up what the wildcards name."""

from __future__ import annotations

from stsflow.config.primary import resolve_primary
from stsflow.config.settings import (
    CorpusSettings,
    EvalSettings,
    ExtractSettings,
    FinetuneSettings,
    ModelSettings,
    ReportSettings,
    SaeSettings,
)
from stsflow.mixture.runs import MixRun, allocation_params
from stsflow.mode import RunMethod


class Params:
    """Parameter functions of the rules of one workflow (``Workflow``)."""

    def __init__(self, wf):
        self.wf = wf

    def model(self, w) -> dict:
        """The slice of a model's config its jobs depend on (not its layers)."""
        return ModelSettings.params(self.wf.models[w.model])

    def extract(self, w) -> dict:
        return ExtractSettings.params(w.kind, self.wf.sts)

    def sft_corpus(self, w) -> dict:
        return CorpusSettings.params(self.wf.sfts[w.corpus], self.wf.sts["sample_seed"])

    def domain_corpus(self, w) -> dict:
        return CorpusSettings.params(self.wf.domains[w.corpus], self.wf.sts["sample_seed"])

    def pool(self, w) -> dict:
        return CorpusSettings.pool_params(self.wf.domains[w.corpus], self.wf.sts["sample_seed"])

    def pool_against(self, w) -> dict:
        """The sources a pool must share no question with: the domain's whole test source (not
        only its max_items sample) and its demonstrations."""
        d = self.wf.domains[w.corpus]
        return {"test": d["test"], "demos": d["demos"]}

    def sae(self, w) -> dict:
        return SaeSettings.params(self.wf.layer_sae(w.model, w.layer, w.sae))

    def sae_where(self, w) -> str:
        """The config entry of an SAE, as errors name it: by name, not by list position (a
        param: reordering the sweep must not prepare anything again)."""
        where = "sae" if w.sae == self.wf.own_sae(w.model, w.layer) else f"sweep[name={w.sae}]"
        return f"models.{w.model}.layers.{w.layer}.{where}"

    def sae_plan(self, w) -> dict:
        """Corpora that train the SAE (none for pretrained SAEs) and that evaluate it (held out)."""
        sae = self.sae(w)
        sfts = list(self.wf.sfts)
        train = (sae["train"].get("corpora") or sfts) if "train" in sae else []
        return {"train": train, "eval": sae.get("eval_corpora") or train or sfts}

    def sae_corpora(self, w) -> list[tuple[str, str]]:
        plan = self.sae_plan(w)
        names = list(dict.fromkeys(plan["train"] + plan["eval"]))
        return [("sft" if n in self.wf.sfts else "domain", n) for n in names]

    def evaluate(self, w=None) -> dict:
        return EvalSettings.params(self.wf.eval)

    def subject(self, w) -> str:
        return self.wf.domains[w.domain]["subject"] or w.domain.replace("_", " ")

    def recipe(self, w) -> dict:
        wf = self.wf
        run = RunMethod.parse(w.method)
        mixture = self.mixture_recipe(w) if run.mix is not None else None
        return FinetuneSettings.params(wf.ft, w.method, model=wf.models[w.model],
                                       sample_seed=wf.sts["sample_seed"],
                                       shards=wf.run_shards(w.method), mixture=mixture)

    def mixture_recipe(self, w) -> dict:
        """What a data-mixture run depends on: its budget and the domains with replay, and only
        its own strategy's inputs (sts, every allocation rule: the predictor's site; oracle: the
        metric) and rule's settings (``allocation_params``: softmax's temperature; nothing for
        the paper's rule, so a finished ``-mix_sts`` run keeps its parameters). The fine-tuning
        run and its ``allocation`` job read the same slice."""
        wf = self.wf
        name = RunMethod.parse(w.method).mix
        strategy = MixRun.parse(name).strategy
        site = wf.mixture_site(w.model)
        out = {"budget": wf.mix["budget"], "domains": wf.replay_domains(w.sft),
               "keep_cut": wf.mix["keep_cut"]}
        if strategy != "uniform":
            out["top_k"] = wf.mix["top_k"]
        if strategy == "sts":
            out.update({k: site[k] for k in ("predictor", "layer", "sae", "n_top")})
        if strategy == "oracle":
            out["metric"] = site["metric"]
        return {**out, **allocation_params(name, wf.mix)}

    def posthoc_label(self, w) -> str:
        return self.wf.posthoc_pair(w.method)[1]

    def posthoc_tuned(self, w) -> dict:
        return self.wf.posthoc_pair(w.method)[0]["tuned"]

    def primary(self, w) -> dict:
        """report.primary with its defaults resolved for this model and SFT set
        (stsflow.config.primary): metrics are evaluate.metrics where tuned models exist, else the
        observed entries'; the method, the first of its runs (none without tuned models)."""
        wf = self.wf
        metrics = (wf.eval["metrics"] if wf.runs(w.model, w.sft)
                   else [o["metric"] for o in wf.observed_entries(w.model, w.sft)])
        return resolve_primary(wf.config["report"]["primary"], wf.models[w.model]["layers"],
                               metrics, wf.sts["n_top"],
                               runs=[m for m, _ in wf.runs(w.model, w.sft)])

    def observed(self, w) -> list[dict]:
        return self.wf.observed_entries(w.model, w.sft)

    def target(self, w):
        """The domain that measures the SFT set's own task (the methods table)."""
        return self.wf.sfts[w.sft]["target"]

    def report(self, w=None) -> dict:
        """The per-SFT report's settings: report: without the analysis across SFT sets."""
        return ReportSettings.per_sft(self.wf.config["report"])

    def report_config_sha256(self, w) -> str:
        """The sha256 a per-SFT report names in its provenance: of ``report_config``, the
        resolved config as far as this (model, SFT set) is concerned. Any edit of it rewrites
        the report (seconds, nothing upstream); adding another SFT set or model does not."""
        from stsflow.io.manifest import config_hash

        return config_hash(report_config(self.wf.config, w.model, w.sft))

    def matrix(self, w) -> dict:
        """The analysis across one model's SFT sets (stsflow.jobs.matrix): its declared primary
        (report.matrix.primary, nulls from report.primary resolved for the model), the shared
        order of SFT sets and domains, each SFT set's target domain and the statistics'
        settings. Every SFT set is named here, so adding one reruns this job, and of the other
        SFT sets' jobs none."""
        from stsflow.analysis.matrix import resolve_matrix_primary

        wf = self.wf
        tuned = any(wf.runs(w.model, s) for s in wf.sfts)
        metrics = (wf.eval["metrics"] if tuned
                   else [o["metric"] for o in wf.config["observed"] if o["model"] == w.model])
        report = wf.config["report"]
        primary = resolve_primary(report["primary"], wf.models[w.model]["layers"], metrics,
                                  wf.sts["n_top"])
        return {"primary": resolve_matrix_primary(report["matrix"]["primary"], primary,
                                                  wf.seeds),
                "sfts": list(wf.sfts), "domains": list(wf.domains),
                "targets": {s: c["target"] for s, c in wf.sfts.items()},
                "top_k": report["matrix"]["top_k"],
                **{k: report[k] for k in ("n_boot", "n_perm", "seed")}}

    def matrix_given(self, w) -> list[dict]:
        """Δ given in the config (observed:) for the model: one row per (SFT set, domain)."""
        return [{"model": w.model, "sft": o["sft"], "domain": d, "metric": o["metric"],
                 "delta": float(v)}
                for o in self.wf.config["observed"] if o["model"] == w.model
                for d, v in o["deltas"].items()]


def report_config(config: dict, model: str, sft: str) -> dict:
    """The resolved config as one per-SFT report depends on it: every section, but of
    ``models``, ``sft``, ``observed`` and ``posthoc`` only the entries of this model and SFT set,
    and without ``report.matrix`` (the analysis across SFT sets, which the per-SFT report does
    not show). Its sha256 is what the report's provenance names; the manifest holds the whole
    config, from which this function recomputes it."""
    out = dict(config)
    out["models"] = {model: config["models"][model]}
    out["sft"] = {sft: config["sft"][sft]}
    out["observed"] = [o for o in config.get("observed", [])
                       if o["model"] == model and o["sft"] == sft]
    out["posthoc"] = {label: p for label, p in (config.get("posthoc") or {}).items()
                      if p["model"] == model and p["sft"] == sft}
    out["report"] = {k: v for k, v in config["report"].items() if k != "matrix"}
    return out
