"""The workflow's view of a validated config: which runs, sites and scores exist, as the rules
and their input functions need them. Built once by ``rules/common.smk``
(``Workflow(config)``); importable and testable without Snakemake."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

from stsflow import config as stsconfig
from stsflow.config.saes import layer_saes, primary_sae, sae_roles
from stsflow.mode import (
    Mode,
    RunMethod,
    Shift,
    mixture_method_pattern,
    mixture_runs,
    mode_pattern,
    posthoc_method,
    posthoc_method_pattern,
    run_method_pattern,
    run_methods,
    shift_pattern,
    trained_method_pattern,
)
from stsflow.workflow.layout import Layout

NAME = "[A-Za-z0-9][A-Za-z0-9_.-]*"


class Workflow:
    """A validated config (``config``) and what follows from it: the runs of every
    (model, SFT set), the SAE sites of every model, the predictors scored, the wildcard
    patterns, and the artifact layout (``layout``)."""

    def __init__(self, config: dict, base_dir: Path | str = ".", *, validated: bool = False):
        self.config = config if validated else stsconfig.validate(config, base_dir=base_dir)
        self.base_dir = Path(base_dir)
        c = self.config
        self.sts, self.models, self.sfts = c["sts"], c["models"], c["sft"]
        self.domains, self.ft, self.eval, self.mix = (c["domains"], c["finetune"], c["evaluate"],
                                                      c["mixture"])
        self.posthoc = c["posthoc"]
        # one seed drives both the ICL demonstration draw and fine-tuning
        self.seeds = self.sts["seeds"]
        self.layout = Layout(c["results"])

    # -- runs ---------------------------------------------------------------------------------

    @cached_property
    def trained_runs(self) -> list[tuple[str, int]]:
        """(run method, seed) of every fine-tuning run: each method's runs (its variants), then
        each data-mixture strategy's run, at every seed."""
        if not self.ft["enabled"]:
            return []
        methods = run_methods(self.ft) + mixture_runs(self.ft, self.mix)
        return [(m, seed) for m in methods for seed in self.seeds]

    def posthoc_seed(self, pair: dict) -> int:
        """A post-hoc pair's seed: its predictions' seed (default: the first of sts.seeds)."""
        return pair["seed"] if pair["seed"] is not None else self.seeds[0]

    def runs(self, model: str, sft: str) -> list[tuple[str, int]]:
        """(run method, seed) of every tuned model of (model, sft): the fine-tuning runs, then
        the post-hoc pairs."""
        return self.trained_runs + [
            (posthoc_method(label), self.posthoc_seed(pair))
            for label, pair in self.posthoc.items()
            if pair["model"] == model and pair["sft"] == sft
        ]

    def posthoc_pair(self, method: str) -> tuple[dict, str]:
        """The posthoc: entry of a post-hoc run method, and its label."""
        label = RunMethod.parse(method).label
        return self.posthoc[label], label

    def run_shards(self, method: str) -> int:
        """The processes (GPUs, FSDP ranks) of a run: finetune.processes for a method that
        shards (stsflow.finetune.registry), one for every other."""
        run = RunMethod.parse(method)
        return self.ft["processes"] if not run.posthoc and run.registered.shards else 1

    def replay_domains(self, sft: str) -> list[str]:
        """The domains a data-mixture run of ``sft`` replays: those with a pool split, but never
        the SFT set's own target domain (replay there would undo the gain fine-tuning is for)."""
        return [d for d in self.domains
                if self.domains[d]["pool"] is not None and d != self.sfts[sft]["target"]]

    @property
    def has_matrix(self) -> bool:
        """Whether the analysis across SFT sets runs: two candidate SFT sets or more."""
        return len(self.sfts) > 1

    def has_observed(self, model: str, sft: str) -> bool:
        return any(o["model"] == model and o["sft"] == sft for o in self.config["observed"])

    def observed_entries(self, model: str, sft: str) -> list[dict]:
        return [o for o in self.config["observed"] if o["model"] == model and o["sft"] == sft]

    # -- sites and scores ---------------------------------------------------------------------

    def sites(self, model: str) -> list[tuple[int, str]]:
        """(layer, SAE name) of every SAE of a model: each layer's sae, then its sweep."""
        return [(layer, name) for layer, entry in self.models[model]["layers"].items()
                for name in layer_saes(entry)]

    def layer_sae(self, model: str, layer, sae: str) -> dict:
        """The config of one SAE of a layer, by name."""
        return layer_saes(self.models[model]["layers"][int(layer)])[sae]

    def own_sae(self, model: str, layer) -> str:
        """The layer's own SAE (the one its extractions run the model for)."""
        return primary_sae(self.models[model]["layers"][int(layer)])

    @cached_property
    def sts_variants(self) -> list[str]:
        """One column (and one scatter plot) per registered predictor; the post-training ones on
        the true shift's rows only (``_oracle``)."""
        from stsflow.scores import oracle_predictors, pretraining_predictors

        out = pretraining_predictors()
        if self.ft["enabled"] or self.posthoc:
            out += [f"{v}_oracle" for v in oracle_predictors()]
        return out

    @cached_property
    def predictors(self) -> list[str]:
        """Every registered predictor (the sts rule's parameter: registering one recomputes every
        score, never an extraction)."""
        from stsflow.scores import PREDICTORS

        return list(PREDICTORS)

    def predicted_shifts(self) -> list[str]:
        return [str(Shift(seed)) for seed in self.seeds]

    def true_shifts(self, model: str, sft: str) -> list[str]:
        return [str(Shift(s, m)) for m, s in self.runs(model, sft)]

    @staticmethod
    def plain_mode() -> str:
        return str(Mode.plain())

    # -- wildcard patterns --------------------------------------------------------------------

    @cached_property
    def patterns(self) -> dict[str, str]:
        """Wildcard constraints: the names of things, the modes and shifts (built from the
        fine-tuning registry), and which SAE names run the model (a layer's sae) or encode its
        kept residuals (a sweep SAE): config validation keeps the two sets apart."""
        primary, sweep = sae_roles(self.models)
        return {
            "name": NAME,
            # an SFT set's name, never the cross-SFT folder's (config validation refuses it)
            "sft": rf"(?!{re.escape(Layout.MATRIX)}(?![A-Za-z0-9_.-])){NAME}",
            "mode": mode_pattern(),
            "method": run_method_pattern(),
            "shift": shift_pattern(),
            "trained_method": trained_method_pattern(),
            "sharded_method": trained_method_pattern(shards_only=True),
            "mixture_method": mixture_method_pattern(),
            "posthoc_method": posthoc_method_pattern(),
            "primary_sae": "|".join(re.escape(n) for n in sorted(primary)),
            "sweep_sae": "|".join(re.escape(n) for n in sorted(sweep)) or "(?!)",
        }

    @property
    def hub_downloads_local(self) -> bool:
        """Downloads of models and SAEs run in the Snakemake process unless the config says the
        compute nodes are online (hub_downloads: cluster, set by a profile): on many clusters
        only the login node is."""
        return self.config["hub_downloads"] == "local"

    def mixture_site(self, model: str) -> dict:
        """The data mixture's predictor, layer, SAE, N and metric: mixture: where given, else
        the report's pre-declared primary analysis (resolved for the model)."""
        from stsflow.config.primary import resolve_primary

        keys = ("predictor", "layer", "sae", "n_top", "metric")
        primary = dict(self.config["report"]["primary"])
        primary.update({k: self.mix[k] for k in keys if self.mix[k] is not None})
        return resolve_primary(primary, self.models[model]["layers"], self.eval["metrics"],
                               self.sts["n_top"])

    # -- what the rules use -------------------------------------------------------------------

    @cached_property
    def params(self):
        from stsflow.workflow.params import Params

        return Params(self)

    @cached_property
    def costs(self):
        from stsflow.workflow.costs import Costs

        return Costs(self)

    @cached_property
    def mixture(self):
        """Which data-mixture runs train (``stsflow.workflow.mixture``): from the allocation
        files on disk, until rules/common.smk gives it the allocation checkpoint."""
        from stsflow.workflow.mixture import MixtureRuns

        return MixtureRuns(self)

    @cached_property
    def inputs(self):
        from stsflow.workflow.inputs import Inputs

        return Inputs(self)

    def targets(self) -> list[str]:
        from stsflow.workflow.targets import all_targets

        return all_targets(self)
