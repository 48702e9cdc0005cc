"""The rules' input functions: each asks a bundle (``stsflow.workflow.bundles``) or the layout
for the paths of one job, named by its wildcards."""

from __future__ import annotations

from pathlib import Path

from stsflow.mode import Mode, RunMethod, Shift
from stsflow.workflow.bundles import (
    CardFiles,
    CoverageFiles,
    FinetuneFiles,
    MatrixFiles,
    ReportFiles,
    SaeInputs,
    ScoreFiles,
    corpus_files,
    paired_inputs,
    tuned_model_inputs,
)


class Inputs:
    """Input functions of the rules of one workflow (``Workflow``)."""

    def __init__(self, wf):
        self.wf = wf
        self.L = wf.layout

    def prepare_model(self, w) -> dict:
        """A hub model's download (fetch_model), done where the network is."""
        if "hf" not in self.wf.models[w.model]["source"]:
            return {}
        return {"hub": self.L.hub_record("models", w.model)}

    def prepare_sae(self, w) -> dict:
        sae = self.wf.layer_sae(w.model, w.layer, w.sae)
        hub = (self.L.hub_record("sae", f"{w.model}/L{w.layer}/{w.sae}")
               if "registry" in sae or "hub" in sae else None)
        return SaeInputs.request(self.wf, w.model, self.wf.params.sae_corpora(w), hub)

    def extract(self, w) -> dict:
        mode = Mode.parse(w.mode)
        mode.check_corpus(w.kind)
        inputs = {"sae": self.L.sae_dir(w.model, w.layer, w.sae)}
        if mode.tuned_model:  # the fine-tuned model on its own SFT queries (true shift)
            inputs.update(tuned_model_inputs(self.wf, w.model, w.corpus, mode.method, mode.seed))
        else:
            inputs["model"] = self.L.model_dir(w.model)
        return {**inputs, **corpus_files(self.wf, w.kind, w.corpus),
                **paired_inputs(self.wf, w.model, w.layer, w.sae, w.kind, w.corpus, w.mode)}

    def encode(self, w) -> dict:
        """A sweep SAE's extraction: the residuals its layer's own extraction kept."""
        Mode.parse(w.mode).check_corpus(w.kind)
        own = self.wf.own_sae(w.model, w.layer)
        return {"residuals": self.L.resid_dir(w.model, w.layer, own, w.kind, w.corpus, w.mode),
                "sae": self.L.sae_dir(w.model, w.layer, w.sae),
                **paired_inputs(self.wf, w.model, w.layer, w.sae, w.kind, w.corpus, w.mode)}

    def gradients(self, w) -> dict:
        data = (self.L.sft_file(w.corpus) if w.kind == "sft"
                else self.L.domain_file(w.corpus, "demos"))
        return {"model": self.L.model_dir(w.model), "data": data}

    def sts(self, w) -> dict:
        return ScoreFiles.request(self.wf, w.model, w.layer, w.sae, w.sft, w.shift, w.domain)

    def sts_parts(self, w, shifts=None) -> list[str]:
        shifts = shifts or self.wf.predicted_shifts()
        return [self.L.sts_part(w.model, layer, sae, w.sft, shift, n, domain)
                for layer, sae in self.wf.sites(w.model) for shift in shifts
                for n in self.wf.sts["n_top"] for domain in self.wf.domains]

    def oracle_parts(self, w) -> list:
        """The true shifts' scores of every run that trains (stsflow.workflow.mixture: a data
        mixture's run with another's data has none), and the allocations still to make."""
        runs = self.wf.mixture.resolve(w.model, w.sft)
        shifts = [str(Shift(s, m)) for m, s in runs.trained]
        return (self.sts_parts(w, shifts) if shifts else []) + runs.pending

    def overlap_predicted(self, w) -> list[str]:
        return [self.L.shift_file(w.model, layer, sae, w.sft, str(Shift(seed)))
                for layer, sae in self.wf.sites(w.model) for seed in self.wf.seeds]

    def overlap_true(self, w) -> list:
        runs = self.wf.mixture.resolve(w.model, w.sft)
        return [self.L.shift_file(w.model, layer, sae, w.sft, str(Shift(seed, m)))
                for m, seed in runs.trained
                for layer, sae in self.wf.sites(w.model)] + runs.pending

    def finetune(self, w) -> dict:
        return FinetuneFiles.request(self.wf, w.model, w.sft, w.method, w.seed)

    def allocation(self, w) -> dict:
        """A data-mixture run's own files: what its allocation weighs and draws from."""
        return FinetuneFiles.mixture(self.wf, w.model, w.sft, w.method, w.seed).named()

    def import_tuned(self, w) -> dict:
        """The base model, and the tuned model's files (a changed file imports it again)."""
        pair, label = self.wf.posthoc_pair(w.method)
        seed = self.wf.posthoc_seed(pair)
        if (w.model, w.sft, int(w.seed)) != (pair["model"], pair["sft"], seed):
            raise ValueError(
                f"posthoc.{label} pairs model {pair['model']!r} and SFT set {pair['sft']!r} at "
                f"seed {seed}; {w.model}/{w.sft}/{w.method}-s{w.seed} is not it")
        ((kind, spec),) = pair["tuned"].items()
        inputs = {"model": self.L.model_dir(w.model)}
        if kind == "gguf":
            inputs["tuned"] = spec["path"]
        elif kind != "hf":  # the files, not the folder: a file overwritten in place counts
            where = Path(spec["path"])
            files = sorted(where.glob("*.safetensors")) + sorted(where.glob("*.json"))
            inputs["tuned"] = [str(f) for f in files] or [str(where)]
        return inputs

    def evaluate_base(self, w) -> dict:
        return {"model": self.L.model_dir(w.model), "test": self.L.domain_file(w.domain, "test"),
                "demos": self.L.domain_file(w.domain, "demos")}

    def evaluate_tuned(self, w) -> dict:
        return {**tuned_model_inputs(self.wf, w.model, w.sft, w.method, w.seed),
                "test": self.L.domain_file(w.domain, "test"),
                "demos": self.L.domain_file(w.domain, "demos")}

    def observed_base(self, w) -> list[str]:
        return [self.L.eval_file(w.model, "base", d) for d in self.wf.domains]

    def observed_tuned(self, w) -> list:
        """Every domain's evaluation of every run that trains (a data mixture's run with
        another's data is not evaluated: stsflow.workflow.mixture), and the allocations still
        to make."""
        runs = self.wf.mixture.resolve(w.model, w.sft)
        return [self.L.eval_file(w.model, self.L.tuned_run(w.sft, m, s), d)
                for m, s in runs.trained for d in self.wf.domains] + runs.pending

    def coverage(self, w) -> dict:
        return CoverageFiles.request(self.wf, w.model, w.sft)

    def report(self, w) -> dict:
        return ReportFiles.request(self.wf, w.model, w.sft)

    def cards(self, w) -> dict:
        return CardFiles.request(self.wf, w.model, w.layer, w.sae, w.sft, w.seed)

    def matrix(self, w) -> dict:
        return MatrixFiles.request(self.wf, w.model)

    def run_method(self, w) -> RunMethod:
        return RunMethod.parse(w.method)
