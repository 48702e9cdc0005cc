"""The pre-declared primary analysis resolved from the config (stsflow.config.primary)."""

from stsflow.config.primary import resolve_primary


def test_resolve_primary_defaults():
    cfg = {"predictor": "sts_icl", "n_top": None, "layer": None, "sae": None, "metric": None,
           "protocol": "all", "target": "abs", "method": None}
    got = resolve_primary(cfg, [20, 12], ["nll", "option_loglik"])
    assert got == dict(cfg, n_top=100, layer=12, metric="nll")
    # given the layers' config, sae null → the primary layer's own sae, not a sweep SAE
    layers = {12: {"sae": {"name": "k32"}, "sweep": [{"name": "k16"}]},
              20: {"sae": {"name": "w"}, "sweep": []}}
    assert resolve_primary(cfg, layers, ["nll"])["sae"] == "k32"
    assert resolve_primary(dict(cfg, layer=20), layers, ["nll"])["sae"] == "w"
    assert resolve_primary(dict(cfg, sae="k16"), layers, ["nll"])["sae"] == "k16"
    assert resolve_primary(dict(cfg, n_top=50, layer=20, metric="x"), [12, 20], []) == \
        dict(cfg, n_top=50, layer=20, metric="x")
    # N=100 not computed: the configured N closest to it (smaller on a tie); explicit N kept
    assert resolve_primary(cfg, [12], ["nll"], [5, 10])["n_top"] == 10
    assert resolve_primary(cfg, [12], ["nll"], [50, 150, 300])["n_top"] == 50
    assert resolve_primary(cfg, [12], ["nll"], [50, 100, 200])["n_top"] == 100
    assert resolve_primary(dict(cfg, n_top=7), [12], ["nll"], [5, 10])["n_top"] == 7


def test_resolve_primary_method():
    """method null → the first run (the first of finetune.methods' runs, else the first post-hoc
    pair's); none without tuned runs; an explicit method kept."""
    cfg = {"predictor": "sts_icl", "protocol": "all", "target": "abs", "method": None}
    runs = ["sae_select-top-k100", "lora", "lora-mix_sts", "posthoc_vendor"]
    assert resolve_primary(cfg, [12], ["nll"], runs=runs)["method"] == "sae_select-top-k100"
    assert resolve_primary(cfg, [12], ["nll"], runs=["posthoc_vendor"])["method"] == \
        "posthoc_vendor"
    assert resolve_primary(cfg, [12], ["nll"], runs=[])["method"] is None
    assert resolve_primary(dict(cfg, method="lora"), [12], ["nll"], runs=runs)["method"] == "lora"
