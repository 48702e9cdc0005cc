"""Where every artifact of the workflow lives under ``results/``: each path written once, here.

Rules pass wildcard patterns (``"{model}"``), input functions pass values; the same function
serves both. Jobs never build these paths: they receive them as named inputs and outputs
(``stsflow.workflow.bundles`` reads the named inputs back)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    results: str

    def model_dir(self, model):
        return f"{self.results}/models/{model}"

    def sae_dir(self, model, layer, sae):
        return f"{self.results}/sae/{model}/L{layer}/{sae}"

    def hub_record(self, what, name):
        """What a download from the hub fetched (fetch_model, fetch_sae): repository, commit,
        files."""
        return f"{self.results}/hub/{what}/{name}.json"

    def replay_file(self, model, domain):
        """The base model's greedy answers to a domain's pool items (the data mixture)."""
        return f"{self.results}/replay/{model}/{domain}.parquet"

    def allocation_file(self, model, sft, method, seed):
        """A data-mixture run's split of its replay budget (stsflow.mixture.records.allocation),
        made before fine-tuning: which runs train on the same data (stsflow.workflow.mixture)."""
        return f"{self.results}/mixture/{model}/{sft}/{method}-s{seed}.json"

    def sft_file(self, corpus):
        return f"{self.results}/data/sft/{corpus}.parquet"

    def domain_file(self, corpus, split):
        """A domain's materialised ``test``, ``demos`` or ``pool`` split."""
        return f"{self.results}/data/domain/{corpus}.{split}.parquet"

    def acts(self, model, layer, sae, kind, corpus, mode, stats=False):
        ext = "stats.parquet" if stats else "parquet"
        return f"{self.results}/acts/{model}/L{layer}/{sae}/{kind}/{corpus}/{mode}.{ext}"

    def panel_dir(self, model, layer, sae, kind, corpus, mode):
        """The baseline predictors' statistics of an extraction (stsflow.features.panel)."""
        return f"{self.results}/acts/{model}/L{layer}/{sae}/{kind}/{corpus}/{mode}.panel"

    def resid_dir(self, model, layer, sae, kind, corpus, mode):
        """The residuals a layer's own extraction keeps for its sweep
        (stsflow.features.residuals)."""
        return f"{self.results}/acts/{model}/L{layer}/{sae}/{kind}/{corpus}/{mode}.resid"

    def grad_file(self, model, kind, corpus):
        """A corpus's projected mean low-rank gradient on the base model
        (stsflow.features.gradients)."""
        return f"{self.results}/grads/{model}/{kind}/{corpus}.parquet"

    def shift_file(self, model, layer, sae, sft, shift, space="sae"):
        """A shift vector: predicted (``s<seed>``) or true (``true-<method>-s<seed>``), of the
        SAE's features or of another feature space of the panel (stsflow.scores.SPACES)."""
        suffix = "" if space == "sae" else f".{space}"
        return f"{self.results}/shift/{model}/L{layer}/{sae}/{sft}/{shift}{suffix}.parquet"

    def shift_files(self, model, layer, sae, sft, shift, unaligned=False):
        """Named shift files of every feature space, as the shift rules write them; a predicted
        shift also has the authors' unaligned row-by-row one (stsflow.scores.unaligned)."""
        from stsflow.scores import SPACES

        spaces = [*SPACES, "unaligned"] if unaligned else SPACES
        return {space: self.shift_file(model, layer, sae, sft, shift, space) for space in spaces}

    def sts_part(self, model, layer, sae, sft, shift, n, domain):
        return f"{self.results}/sts/{model}/L{layer}/{sae}/{sft}/{shift}/N{n}/{domain}.parquet"

    def ckpt_dir(self, model, sft, method, seed):
        return f"{self.results}/finetune/{model}/{sft}/{method}-s{seed}"

    def history_file(self, model, sft, method, seed):
        """A fine-tuning run's loss history (its metadata: recipe, sample, answers cut)."""
        return self.ckpt_dir(model, sft, method, seed) + ".history.parquet"

    def eval_file(self, model, run, domain):
        """Per-item evaluation of a domain: ``run`` is ``base`` or ``tuned_run(...)``."""
        return f"{self.results}/eval/{model}/{run}/{domain}.parquet"

    def reps_file(self, model, run, domain):
        """The mean residual of a domain's queries at every layer, as an evaluation run recorded
        it (stsflow.features.reps): ``run`` is ``base`` or ``tuned_run(...)``."""
        return f"{self.results}/eval/{model}/{run}/{domain}.reps.parquet"

    @staticmethod
    def tuned_run(sft, method, seed):
        """The evaluation run name of a fine-tuned model."""
        return f"{sft}/{method}-s{seed}"

    def table(self, model, sft, name, ext="parquet"):
        return f"{self.results}/tables/{model}/{sft}/{name}.{ext}"

    def cards_file(self, model, layer, sae, sft, seed):
        """Feature cards of one shift vector's top dimensions, predicted and true
        (stsflow.report.cards)."""
        return f"{self.results}/cards/{model}/L{layer}/{sae}/{sft}/s{seed}.parquet"

    def report_file(self, model, sft, name):
        return f"{self.results}/reports/{model}/{sft}/{name}"

    # The analysis across a model's SFT sets sits beside the per-SFT folders, under a name no SFT
    # set may take (stsflow.config.analysis_checks; the sft wildcard excludes it).
    MATRIX = "matrix"

    def matrix_table(self, model, name):
        """A table of the transfer matrix across SFT sets (stsflow.jobs.matrix.TABLES)."""
        return self.table(model, self.MATRIX, name)

    def matrix_tables(self, model) -> dict[str, str]:
        """Every table the cross-SFT job writes, by name."""
        from stsflow.jobs.matrix import TABLES

        return {name: self.matrix_table(model, name) for name in TABLES}

    def matrix_report(self, model, name):
        return self.report_file(model, self.MATRIX, name)

    # the files of the cross-SFT page, as stsflow.report.matrix.write_matrix_report names them
    # (tests/workflow/test_layout.py compares; that module imports matplotlib, too slow here)
    MATRIX_PAGE = {"html": "summary.html", "md": "summary.md", "heatmaps": "matrix_heatmaps.png"}

    def matrix_page(self, model) -> dict[str, str]:
        """The cross-SFT report page: its HTML (the heatmaps embedded), Markdown and heatmaps."""
        return {key: self.matrix_report(model, name) for key, name in self.MATRIX_PAGE.items()}

    def log(self, rule, name=None):
        """The log of one job (``name``: its wildcards as a path; none for a rule of one job)."""
        return f"{self.results}/logs/{rule}.log" if name is None else \
            f"{self.results}/logs/{rule}/{name}.log"

    def benchmark(self, rule, name):
        """Snakemake's measurement of one job: wall time and peak memory (``benchmark:``)."""
        return f"{self.results}/benchmarks/{rule}/{name}.tsv"

    @property
    def manifest(self):
        return f"{self.results}/manifest.json"
