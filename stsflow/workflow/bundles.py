"""Named inputs: one class per bundle, holding both the paths a rule asks for (``request``, the
rule's input function) and the way its job reads them back (``read``, from Snakemake's named
input list or any mapping of names to paths). Each key format lives here and nowhere else.

Snakemake compares a job's input *files* (sorted) to decide what reruns, not their names, so the
keys are free to read well."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from stsflow.mixture.runs import MixRun
from stsflow.mode import Mode, RunMethod, Shift


def _keys(named) -> list[str]:
    return list(named.keys())


def _with_prefix(named, prefix: str) -> dict[str, object]:
    """``{rest: path}`` of every key ``<prefix><rest>``, in input order."""
    return {k[len(prefix):]: named[k] for k in _keys(named) if k.startswith(prefix)}


def _optional(named, key: str):
    return named[key] if key in _keys(named) else None


# -- data ---------------------------------------------------------------------------------------


def corpus_files(wf, kind: str, corpus: str) -> dict[str, str]:
    """A corpus's materialised files, as the jobs that read a corpus name them: an SFT set's
    items, a domain's test and demonstration splits."""
    L = wf.layout
    if kind == "sft":
        return {"sft_items": L.sft_file(corpus)}
    return {"test": L.domain_file(corpus, "test"), "demos": L.domain_file(corpus, "demos")}


def read_corpus_files(named) -> dict[str, object]:
    return {k: named[k] for k in ("sft_items", "test", "demos") if k in _keys(named)}


# -- prepare_sae --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaeInputs:
    """prepare_sae: the model, a hub SAE's download, and each corpus that trains or evaluates
    the SAE (``corpus:<kind>:<name>``: the job reads kind and name from the key, never from list
    order)."""

    model: object
    corpora: dict  # name -> (kind, materialised file)
    hub: object = None
    PREFIX = "corpus:"

    @classmethod
    def request(cls, wf, model: str, corpora: list[tuple[str, str]], hub: str | None) -> dict:
        L = wf.layout
        inputs = {"model": L.model_dir(model)}
        if hub is not None:
            inputs["hub"] = hub
        for kind, name in corpora:
            path = L.sft_file(name) if kind == "sft" else L.domain_file(name, "test")
            inputs[f"{cls.PREFIX}{kind}:{name}"] = path
        return inputs

    @classmethod
    def read(cls, named) -> "SaeInputs":
        corpora = {}
        for rest, path in _with_prefix(named, cls.PREFIX).items():
            kind, name = rest.split(":", 1)
            corpora[name] = (kind, path)
        return cls(named["model"], corpora, _optional(named, "hub"))


# -- extraction ---------------------------------------------------------------------------------


def paired_inputs(wf, model, layer, sae, kind, corpus, mode: str) -> dict[str, str]:
    """A paired run's references: the plain run of the same corpus with the same SAE."""
    if not Mode.parse(mode).paired:
        return {}
    L, plain = wf.layout, wf.plain_mode()
    return {"reference": L.acts(model, layer, sae, kind, corpus, plain),
            "panel_ref": L.panel_dir(model, layer, sae, kind, corpus, plain)}


@dataclass(frozen=True)
class Paired:
    """What a paired extraction (ICL, tuned) reads of its plain run: its shard and panel."""

    reference: object = None
    panel_ref: object = None

    @classmethod
    def read(cls, named) -> "Paired":
        return cls(_optional(named, "reference"), _optional(named, "panel_ref"))


def tuned_model_inputs(wf, model: str, sft: str, method: str, seed) -> dict[str, str]:
    """What loading a tuned model reads: its checkpoint, the base (an adapter is merged into it,
    selective maps attached to it) and, for a method anchored at SAE sites, the SAE of each."""
    L = wf.layout
    inputs = {"model": L.ckpt_dir(model, sft, method, seed), "base": L.model_dir(model)}
    for layer, sae in method_sites(wf, model, method):
        inputs[f"site_sae:{layer}"] = L.sae_dir(model, layer, sae)
    return inputs


def method_sites(wf, model: str, method: str) -> list[tuple[int, str]]:
    """The (layer, SAE) sites of a run whose method is anchored at SAE sites (none otherwise)."""
    run = RunMethod.parse(method)
    if run.posthoc or run.registered.sites is None:
        return []
    m = run.registered
    return m.sites(wf.models[model], wf.ft[m.section] if m.section else None)


# -- scores -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreFiles:
    """The sts rule's inputs: the shift file of every feature space the predictors read (for a
    predicted shift, the authors' unaligned one too, and the SFT set's plain statistics, the
    random-dimension control's pool of live dimensions: ``scores.controls``), the domain's plain
    and ICL statistics and panels, the SFT set's panel, the two corpora's mean gradients and,
    for a true shift, the
    domain's mean residuals before and after its fine-tuning. Only what some registered
    predictor needs is requested (``stsflow.scores.registry``: ``needs``)."""

    shifts: dict
    plain: dict
    icl: dict
    SHIFT = "shift:"

    @classmethod
    def request(cls, wf, model, layer, sae, sft, shift: str, domain) -> dict:
        from stsflow.scores import SPACES, needed_inputs

        L, needs = wf.layout, needed_inputs()
        s = Shift.parse(shift)
        spaces = [*SPACES, "unaligned"] if not s.true and "unaligned" in needs else SPACES
        spaces = [sp for sp in spaces if sp == "sae" or "panel" in needs or sp == "unaligned"]
        inputs = {f"{cls.SHIFT}{sp}": L.shift_file(model, layer, sae, sft, shift, sp)
                  for sp in spaces}
        plain, icl = wf.plain_mode(), str(Mode.domain_icl())
        at = (model, layer, sae)
        inputs.update(plain=L.acts(*at, "domain", domain, plain, stats=True),
                      icl=L.acts(*at, "domain", domain, icl, stats=True))
        if not s.true:  # the random-dimension control's pool: where the SFT queries fire
            inputs["sft_plain"] = L.acts(*at, "sft", sft, plain, stats=True)
        if "panel" in needs:
            inputs.update(plain_panel=L.panel_dir(*at, "domain", domain, plain),
                          icl_panel=L.panel_dir(*at, "domain", domain, icl),
                          sft_panel=L.panel_dir(*at, "sft", sft, plain))
        if "gradients" in needs:
            inputs.update(sft_grad=L.grad_file(model, "sft", sft),
                          domain_grad=L.grad_file(model, "domain", domain))
        if s.true and "reps" in needs:  # the domain before and after this fine-tuning
            inputs.update(reps_base=L.reps_file(model, "base", domain),
                          reps_tuned=L.reps_file(model, L.tuned_run(sft, s.method, s.seed),
                                                 domain))
        return inputs

    @classmethod
    def read(cls, named) -> "ScoreFiles":
        plain = {"stats": named["plain"]}
        for key, name in (("plain_panel", "panel"), ("sft_panel", "sft_panel"),
                          ("sft_plain", "sft_stats"),
                          ("sft_grad", "sft_grad"), ("domain_grad", "domain_grad"),
                          ("reps_base", "reps_base"), ("reps_tuned", "reps_tuned")):
            if key in _keys(named):
                plain[name] = named[key]
        icl = {"stats": named["icl"]}
        if "icl_panel" in _keys(named):
            icl["panel"] = named["icl_panel"]
        return cls(_with_prefix(named, cls.SHIFT), plain, icl)


# -- fine-tuning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneFiles:
    """A fine-tuning run's inputs: the base model and the SFT set; at each SAE site of a method
    anchored there, the SAE and the run seed's predicted shift; for a data-mixture run, each
    replayed domain's replay and what its strategy weighs the domains by (the predictor's score;
    the base and plain run's evaluations)."""

    sites: dict = field(default_factory=dict)  # layer -> {"sae": path, "shift": path}
    replay: dict = field(default_factory=dict)  # domain -> path
    scores: dict = field(default_factory=dict)
    eval_base: dict = field(default_factory=dict)
    eval_plain: dict = field(default_factory=dict)

    def named(self) -> dict[str, str]:
        """These files as named inputs (the keys ``read`` takes back)."""
        out = {}
        for layer, files in self.sites.items():
            out[f"site_sae:{layer}"] = files["sae"]
            out[f"site_shift:{layer}"] = files["shift"]
        for prefix, paths in (("replay:", self.replay), ("score:", self.scores),
                              ("eval_base:", self.eval_base), ("eval_plain:", self.eval_plain)):
            out.update({f"{prefix}{d}": p for d, p in paths.items()})
        return out

    @classmethod
    def request(cls, wf, model: str, sft: str, method: str, seed) -> dict:
        L = wf.layout
        sites = {layer: {"sae": L.sae_dir(model, layer, sae),
                         "shift": L.shift_file(model, layer, sae, sft, str(Shift(int(seed))))}
                 for layer, sae in method_sites(wf, model, method)}
        files = replace(cls.mixture(wf, model, sft, method, seed), sites=sites)
        return {"model": L.model_dir(model), "sft_items": L.sft_file(sft), **files.named()}

    @classmethod
    def mixture(cls, wf, model: str, sft: str, method: str, seed) -> "FinetuneFiles":
        """A data-mixture run's own files (none for another run): each replayed domain's replay
        and what the run's strategy weighs the domains by: the predictor's score of the run
        seed's prediction (sts, whatever its allocation rule), the base and plain run's
        evaluations (oracle). Its ``allocation`` job reads the same files."""
        L = wf.layout
        replay, scores, eval_base, eval_plain = {}, {}, {}, {}
        run = RunMethod.parse(method)
        if run.mix is not None:
            strategy = MixRun.parse(run.mix).strategy
            site = wf.mixture_site(model)
            plain = L.tuned_run(sft, str(run.unmixed), seed)
            for d in wf.replay_domains(sft):
                replay[d] = L.replay_file(model, d)
                if strategy == "sts":
                    scores[d] = L.sts_part(model, site["layer"], site["sae"], sft,
                                           str(Shift(int(seed))), site["n_top"], d)
                if strategy == "oracle":
                    eval_base[d] = L.eval_file(model, "base", d)
                    eval_plain[d] = L.eval_file(model, plain, d)
        return cls({}, replay, scores, eval_base, eval_plain)

    @classmethod
    def read(cls, named: Mapping) -> "FinetuneFiles":
        sites: dict = {}
        for layer, path in _with_prefix(named, "site_sae:").items():
            sites.setdefault(int(layer), {})["sae"] = path
        for layer, path in _with_prefix(named, "site_shift:").items():
            sites.setdefault(int(layer), {})["shift"] = path
        return cls(sites, _with_prefix(named, "replay:"), _with_prefix(named, "score:"),
                   _with_prefix(named, "eval_base:"), _with_prefix(named, "eval_plain:"))


# -- tables and reports -------------------------------------------------------------------------


@dataclass(frozen=True)
class CoverageFiles:
    """The coverage table's inputs: the statistics of each corpus's extractions
    (``extraction:<mode>:<kind>:<name>``: the plain run of every corpus, each domain's ICL run,
    the SFT set's ICL run of every seed, where the context can overflow) and the history of each
    fine-tuning run that trains (``history:<run>``; stsflow.workflow.mixture)."""

    extractions: dict  # (kind, corpus, mode) -> path
    finetunes: dict  # "<method>-s<seed>" -> path
    PREFIX = "extraction:"

    @classmethod
    def request(cls, wf, model: str, sft: str) -> dict:
        L = wf.layout
        layer = min(wf.models[model]["layers"])  # the query selection does not depend on it
        at = (model, layer, wf.own_sae(model, layer))
        runs = [("sft", sft, wf.plain_mode())]
        runs += [("sft", sft, str(Mode.sft_icl(seed))) for seed in wf.seeds]
        for d in wf.domains:
            runs += [("domain", d, wf.plain_mode()), ("domain", d, str(Mode.domain_icl()))]
        inputs = {f"{cls.PREFIX}{mode}:{kind}:{name}": L.acts(*at, kind, name, mode, stats=True)
                  for kind, name, mode in runs}
        resolved = wf.mixture.resolve(model, sft)
        for m, s in resolved.trained_here():
            inputs[f"history:{m}-s{s}"] = L.history_file(model, sft, m, s)
        return {**inputs, **resolved.pending_inputs()}

    @classmethod
    def read(cls, named) -> "CoverageFiles":
        extractions = {}
        for rest, path in _with_prefix(named, cls.PREFIX).items():
            mode, kind, name = rest.split(":", 2)
            extractions[(kind, name, mode)] = path
        return cls(extractions, _with_prefix(named, "history:"))


@dataclass(frozen=True)
class ReportFiles:
    """The report's inputs: the tables, every SAE's directory (quality figures, warnings), the
    history of each tuned run that trains (the methods table), every data-mixture run's
    allocation (the allocation table, and which runs share their training data:
    stsflow.workflow.mixture), the feature cards, and for provenance the model and every
    dataset."""

    sts: object
    coverage: object
    tables: dict  # observed, sts_oracle, overlap: where tuned models exist
    sae_dirs: dict  # (layer, SAE name) -> path
    histories: dict  # "<method>-s<seed>" -> path
    cards: list
    model: object
    data: dict  # "<kind> <name>" -> path
    allocations: dict = field(default_factory=dict)  # "<method>-s<seed>" -> path
    TABLES = ("observed", "sts_oracle", "overlap")

    @classmethod
    def request(cls, wf, model: str, sft: str) -> dict:
        L = wf.layout
        inputs = {"sts": L.table(model, sft, "sts"), "coverage": L.table(model, sft, "coverage")}
        for layer, sae in wf.sites(model):
            inputs[f"sae:{layer}:{sae}"] = L.sae_dir(model, layer, sae)
        if wf.runs(model, sft):
            for name in cls.TABLES:
                inputs[name] = L.table(model, sft, name)
            runs = wf.mixture.resolve(model, sft)
            for m, s in runs.trained:
                inputs[f"history:{m}-s{s}"] = L.history_file(model, sft, m, s)
            for (m, s), path in runs.allocations.items():
                inputs[f"allocation:{m}-s{s}"] = path
            inputs.update(runs.pending_inputs())
        inputs["cards"] = [L.cards_file(model, layer, sae, sft, seed)
                           for layer, sae in wf.sites(model) for seed in wf.seeds]
        inputs["model"] = L.model_dir(model)
        inputs[f"data:sft {sft}"] = L.sft_file(sft)
        for d in wf.domains:
            inputs[f"data:domain {d}"] = L.domain_file(d, "test")
            inputs[f"data:demos {d}"] = L.domain_file(d, "demos")
        return inputs

    @classmethod
    def read(cls, named) -> "ReportFiles":
        sae_dirs = {}
        for rest, path in _with_prefix(named, "sae:").items():
            layer, name = rest.split(":", 1)
            sae_dirs[(int(layer), name)] = path
        return cls(named["sts"], named["coverage"],
                   {k: named[k] for k in cls.TABLES if k in _keys(named)}, sae_dirs,
                   _with_prefix(named, "history:"), list(named["cards"]), named["model"],
                   _with_prefix(named, "data:"), _with_prefix(named, "allocation:"))


@dataclass(frozen=True)
class CardFiles:
    """A seed's feature cards: its predicted shift and the true shift of every tuned run of
    that seed that trains (stsflow.workflow.mixture), and the plain-query shards of the SFT set
    and of every domain (contexts and frequencies)."""

    model: object
    sae: object
    shifts: list
    shards: dict  # (kind, corpus) -> path

    @classmethod
    def request(cls, wf, model: str, layer, sae: str, sft: str, seed) -> dict:
        L = wf.layout
        seed = int(seed)
        runs = wf.mixture.resolve(model, sft)
        shifts = [L.shift_file(model, layer, sae, sft, str(Shift(seed)))]
        shifts += [L.shift_file(model, layer, sae, sft, str(Shift(seed, m)))
                   for m, s in runs.trained if s == seed]
        inputs = {"model": L.model_dir(model), "sae": L.sae_dir(model, layer, sae),
                  "shifts": shifts, "shard:sft": L.acts(model, layer, sae, "sft", sft, "plain")}
        for d in wf.domains:
            inputs[f"shard:domain:{d}"] = L.acts(model, layer, sae, "domain", d, "plain")
        return {**inputs, **runs.pending_inputs()}

    @classmethod
    def read(cls, named, sft: str) -> "CardFiles":
        shards = {("sft", sft): named["shard:sft"]}
        shards.update({("domain", d): p for d, p in _with_prefix(named, "shard:domain:").items()})
        return cls(named["model"], named["sae"], list(named["shifts"]), shards)


@dataclass(frozen=True)
class MatrixFiles:
    """The cross-SFT analysis of one model: every SFT set's STS table (``sts:<sft>``) and, for the
    SFT sets with tuned models, their observed table (``observed:<sft>``). Only these tables:
    the job reads no per-SFT report, so a per-SFT report rewritten (its provenance, a setting)
    leaves the matrix as it is."""

    sts: dict  # SFT set -> its STS table
    observed: dict  # SFT set -> its observed table (fine-tuned or post-hoc pairs only)
    STS, OBSERVED = "sts:", "observed:"

    @classmethod
    def request(cls, wf, model: str) -> dict:
        L = wf.layout
        inputs = {f"{cls.STS}{s}": L.table(model, s, "sts") for s in wf.sfts}
        inputs.update({f"{cls.OBSERVED}{s}": L.table(model, s, "observed")
                       for s in wf.sfts if wf.runs(model, s)})
        return inputs

    @classmethod
    def read(cls, named) -> "MatrixFiles":
        return cls(_with_prefix(named, cls.STS), _with_prefix(named, cls.OBSERVED))
