"""Typed settings against the schema: every config key a job receives is a field, every field
is a config key (or a documented extra), no field carries a second copy of a schema default, and
the rule parameters of the embedded default build every settings class."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import REPO

from stsflow import config as stsconfig
from stsflow.config import settings as S
from stsflow.config.schema import ConfigError

# Fields that are not keys of the section they mirror, and why.
EXTRAS = {
    S.FinetuneSettings: {"method", "seed",  # from the rule's wildcards
                         "sample_seed",  # sts.sample_seed, passed with max_items
                         "deterministic",  # not configurable: always on in the workflow
                         "mixture"},  # the top-level mixture: section, resolved per run
    S.ExtractSettings: {"kind", "tokens", "demonstrations"},  # renamed per kind, see KIND_KEYS
}
MIRRORS = [S.ModelSettings, S.ExtractSettings, S.SaeSettings, S.SaeTrainSettings,
           S.EvalSettings, S.ReportSettings, S.CardSettings, S.FinetuneSettings]


def schema_keys(cls) -> set[str]:
    props = set(S.schema_section(cls.SECTION)["properties"])
    return props - set(getattr(cls, "NOT_PASSED", ()))


@pytest.mark.parametrize("cls", MIRRORS, ids=lambda c: c.__name__)
def test_fields_are_the_schema_keys(cls):
    fields = {f.name for f in dataclasses.fields(cls)}
    keys = schema_keys(cls)
    if cls is S.ExtractSettings:  # one kind's budget and demonstrations, renamed
        keys -= {"sft_tokens", "domain_tokens", "t", "m", "n_top", "seeds"}
        # the sts rule's (reduction) and the gradients rule's, not extraction's
        keys -= {"random_draws", "probe_folds", "grad_examples", "grad_dim", "unaligned_rows"}
    assert fields - EXTRAS.get(cls, set()) == keys


def test_checkpoint_settings_are_the_finetune_keys_the_recipe_leaves_out():
    fields = {f.name for f in dataclasses.fields(S.CheckpointSettings)}
    assert fields == set(S.CHECKPOINT_KEYS) <= set(S.schema_section("finetune")["properties"])
    assert set(S.CHECKPOINT_KEYS) <= set(S.FinetuneSettings.NOT_PASSED)


def test_corpus_settings_cover_both_corpus_sections():
    fields = {f.name for f in dataclasses.fields(S.CorpusSettings)}
    sft = set(S.schema_section("sft.*")["properties"])
    domain = set(S.schema_section("domains.*")["properties"])
    assert fields == (sft | domain | {"sample_seed"}) - set(S.CorpusSettings.NOT_PASSED)


@pytest.mark.parametrize("cls", MIRRORS + [S.CorpusSettings], ids=lambda c: c.__name__)
def test_no_second_copy_of_a_schema_default(cls):
    """A field that mirrors a config key has no default of its own: the schema's is the only
    one. (Defaults are allowed only on the documented extras and on the corpus fields that one
    of the two corpus kinds lacks.)"""
    allowed = EXTRAS.get(cls, set()) | {"source", "test", "demos", "subject", "registry",
                                        "hub", "local", "train", "name",
                                        # finetune.sae_select's sites, which the rule passes to
                                        # sae_select runs only (None for the others)
                                        "sae_select",
                                        # finetune.grpo, likewise passed to grpo runs only
                                        "grpo",
                                        # finetune.processes, passed to full runs only
                                        # when above 1 (one process: absent)
                                        "processes",
                                        # optional budgets, passed only when set (None: absent)
                                        "batch_tokens", "micro_batch_tokens",
                                        # the generate metric's engine, passed only when not
                                        # the built-in one (rules/common.smk OPTIONAL_KEYS)
                                        "generate_backend", "lm_eval_args",
                                        # sae.train.b_dec_init, passed only when mean
                                        "b_dec_init"}
    with_default = {f.name for f in dataclasses.fields(cls)
                    if f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING}
    assert with_default <= allowed


def test_build_names_missing_and_unknown_keys():
    base = S.defaults("evaluate")
    with pytest.raises(ConfigError) as err:
        S.build(S.EvalSettings, {k: v for k, v in base.items() if k != "k_shot"} | {"kshot": 3},
                "evaluate")
    problems = err.value.problems
    assert any(p.startswith("evaluate.kshot: unknown") for p in problems)
    assert any(p.startswith("evaluate.k_shot: missing") for p in problems)


def test_with_defaults_reads_the_schema():
    raw = yaml.safe_load((REPO / "stsflow" / "schemas" / "config.schema.yaml").read_text())
    ft = raw["properties"]["finetune"]["properties"]
    recipe = S.FinetuneSettings.with_defaults("full", 3)
    assert (recipe.method, recipe.seed) == ("full", 3)
    assert recipe.lr == ft["lr"]["default"] and list(recipe.betas) == ft["betas"]["default"]
    assert recipe.lora_targets == tuple(ft["lora_targets"]["default"])
    sae = S.SaeSettings.with_defaults(train={"width": 64})
    assert sae.train.width == 64 and sae.train.k == S.defaults("$defs.sae.train")["k"]
    ext = S.ExtractSettings.with_defaults("domain", m=3)
    assert (ext.kind, ext.demonstrations, ext.tokens) == ("domain", 3,
                                                          S.defaults("sts")["domain_tokens"])


def test_embedded_default_builds_every_job_settings():
    """What the rules pass (rules/common.smk slices of the validated embedded config) builds
    each settings class; the extraction slice of a kind carries only that kind's keys."""
    cfg = stsconfig.load(REPO / "config.yaml", base_dir=REPO)
    for name, model in cfg["models"].items():
        ms = S.ModelSettings.from_config({k: model[k] for k in S.ModelSettings.keys()})
        assert ms.dtype == model["dtype"]
        for layer in model["layers"].values():
            sae = S.SaeSettings.from_config(layer["sae"])
            assert (sae.train is None) == ("train" not in layer["sae"])
    for kind in ("sft", "domain"):
        params = S.ExtractSettings.params(kind, cfg["sts"])
        other = "domain_tokens" if kind == "sft" else "sft_tokens"
        assert other not in params
        ext = S.ExtractSettings.from_params(kind, params)
        assert ext.tokens == cfg["sts"][f"{kind}_tokens"]
    recipe = {k: v for k, v in cfg["finetune"].items()
              if k not in ("enabled", "methods", "sae_select", "grpo", *S.CHECKPOINT_KEYS)}
    assert S.CheckpointSettings.from_config(cfg) == S.CheckpointSettings(
        cfg["finetune"]["checkpoint_every"], cfg["finetune"]["keep_checkpoints"])
    assert S.FinetuneSettings.from_recipe(recipe, "lora", 0).epochs == cfg["finetune"]["epochs"]
    sites = {"layers": [12], "saes": ["main"]}
    run = S.FinetuneSettings.from_recipe(dict(recipe, sae_select=sites), "sae_select-top-k64", 0)
    assert (run.run.select, run.run.k, run.sae_select) == ("top", 64, sites)
    rl = S.FinetuneSettings.from_recipe(dict(recipe, grpo=cfg["finetune"]["grpo"]), "grpo", 0)
    assert rl.grpo["group_size"] >= 2 and rl.run.method == "grpo"
    with pytest.raises(ValueError, match="grpo runs, and only them"):
        S.FinetuneSettings.from_recipe(recipe, "grpo", 0)
    assert S.EvalSettings.from_config(cfg["evaluate"]).metrics == tuple(cfg["evaluate"]["metrics"])
    assert S.ReportSettings.from_config(cfg["report"]).n_boot == cfg["report"]["n_boot"]
    assert S.CardSettings.from_config(cfg["cards"]).n_top == cfg["cards"]["n_top"]
    for kind, section in (("sft", "sft"), ("domain", "domains")):
        for cname, spec in cfg[section].items():
            passed = {k: v for k, v in spec.items() if k not in S.CorpusSettings.NOT_PASSED}
            corpus = S.CorpusSettings.from_config(dict(passed, sample_seed=0),
                                                  f"{section}.{cname}")
            assert (corpus.source is None) == (kind == "domain")


def test_settings_are_frozen():
    ev = S.EvalSettings.with_defaults()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.k_shot = 1
