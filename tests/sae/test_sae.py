"""SAE preparation: the SAE must belong to the model and layer (refused at the start of the job
with the wording of config validation, unless accepted and recorded), a declared model other than
the configured one is a recorded warning, and every SAE gets quality figures on held-out tokens,
checked here against a direct float64 computation and against hand-built SAEs whose answers are
known (perfect reconstruction: loss recovered 1; zero reconstruction: 0)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from conftest import make_model, make_tokenizer, saved_sae, sft_records, without_leaks

from stsflow import config as stsconfig
from stsflow.config import facts
from stsflow.config.schema import ConfigError
from stsflow.config.settings import ModelSettings, SaeSettings
from stsflow.jobs import prepare as prepare_job
from stsflow.sae import info as sae_info
from stsflow.sae import prepare, quality

LAYER = 1
WHERE = f"models.tiny.layers.{LAYER}.sae"


def standard_sae(W_enc, W_dec, dtype=torch.float64):
    """A ReLU SAE with the given weights and zero biases."""
    from sae_lens import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=W_enc.shape[0], d_sae=W_enc.shape[1], dtype="float64"))
    with torch.no_grad():
        sae.W_enc.copy_(W_enc)
        sae.W_dec.copy_(W_dec)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.to(dtype).eval()


def windows(n=7, seed=0):
    """Token windows ``(ids, skip)`` of varied lengths (so batches are padded), vocabulary of the
    conftest tokenizer."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(12, 30))
        out.append((rng.integers(4, 100, size=length).tolist(), int(rng.integers(1, 5))))
    return out


@pytest.fixture(scope="module")
def model64():
    tok = make_tokenizer()
    model = make_model(len(tok), seed=3).double().eval()
    with torch.no_grad():  # sharper predictions: zero ablation then moves the loss clearly
        model.lm_head.weight.mul_(10)
    return model


# --- quality figures -----------------------------------------------------------------------------

def direct_figures(model, layer, sae, wins):
    """Independent reference: one unpadded window at a time; the splice replaces the *input* of
    block layer+1 (a pre-hook), the same tensor as the output of block ``layer``; CE by a float64
    log-softmax in numpy."""
    nxt = model.model.layers[layer + 1]
    state = {}

    def pre_hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        state["x"] = hidden[0].detach().clone()
        if state.get("new") is None:
            return None
        hidden = hidden.clone()
        hidden[0, state["skip"]:] = state["new"]
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    def nll(logits, ids, skip):
        z = logits[0].detach().numpy().astype(np.float64)
        logp = z - z.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        return [-logp[p, ids[p + 1]] for p in range(skip, len(ids) - 1)]

    handle = nxt.register_forward_pre_hook(pre_hook, with_kwargs=True)
    ce = {"clean": [], "sae": [], "zero": []}
    xs, recons, feats = [], [], []
    try:
        with torch.no_grad():
            for ids, skip in wins:
                t = torch.tensor([ids])
                state.update(new=None, skip=skip)
                ce["clean"] += nll(model(t).logits, ids, skip)
                x = state["x"][skip:]
                f = sae.encode(x)
                r = sae.decode(f)
                xs.append(x.numpy()), recons.append(r.numpy()), feats.append(f.numpy())
                state["new"] = r
                ce["sae"] += nll(model(t).logits, ids, skip)
                state["new"] = torch.zeros_like(x)
                ce["zero"] += nll(model(t).logits, ids, skip)
    finally:
        handle.remove()
    x, r, f = np.concatenate(xs), np.concatenate(recons), np.concatenate(feats)
    clean, spliced, zero = (float(np.mean(ce[k])) for k in ("clean", "sae", "zero"))
    return {"ce_clean": clean, "ce_with_sae": spliced, "ce_zero_ablation": zero,
            "loss_recovered": (zero - spliced) / (zero - clean),
            "fraction_variance_explained": 1 - ((x - r) ** 2).sum() / ((x - x.mean(0)) ** 2).sum(),
            "l0": float((f != 0).sum(1).mean()), "eval_tokens": x.shape[0],
            "dead_fraction": float(((f != 0).sum(0) == 0).mean())}


def test_quality_figures_match_a_direct_computation(model64):
    from conftest import make_sae

    sae = make_sae(d_in=32, width=64, k=6).double()
    wins = windows()
    got, acts = quality.evaluate_sae(model64, LAYER, sae, wins, model_batch=3)
    want = direct_figures(model64, LAYER, sae, wins)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert acts.shape == (want["eval_tokens"], 32)


def test_perfect_reconstruction_recovers_all_the_loss(model64):
    """relu(x) - relu(-x) = x: encoder [I, -I], decoder [I; -I] reconstruct exactly."""
    eye = torch.eye(32, dtype=torch.float64)
    sae = standard_sae(torch.cat([eye, -eye], 1), torch.cat([eye, -eye], 0))
    got, _ = quality.evaluate_sae(model64, LAYER, sae, windows(), model_batch=4)
    assert got["loss_recovered"] == pytest.approx(1.0, abs=1e-9)
    assert got["ce_with_sae"] == pytest.approx(got["ce_clean"], abs=1e-9)
    assert got["fraction_variance_explained"] == pytest.approx(1.0, abs=1e-12)
    assert got["l0"] == pytest.approx(32)  # one of relu(x_i), relu(-x_i) is active per dim
    assert abs(got["ce_zero_ablation"] - got["ce_clean"]) > 0.1  # the ratio is well defined


def test_zero_reconstruction_recovers_none_of_the_loss(model64):
    eye = torch.eye(32, dtype=torch.float64)
    sae = standard_sae(torch.cat([eye, -eye], 1), torch.zeros(64, 32, dtype=torch.float64))
    got, _ = quality.evaluate_sae(model64, LAYER, sae, windows(), model_batch=4)
    assert got["loss_recovered"] == pytest.approx(0.0, abs=1e-9)
    assert got["ce_with_sae"] == pytest.approx(got["ce_zero_ablation"], abs=1e-9)


def test_windows_without_targets_are_refused(model64):
    """A window encoded only at its last position has no next token to score."""
    eye = torch.eye(32, dtype=torch.float64)
    sae = standard_sae(torch.cat([eye, -eye], 1), torch.cat([eye, -eye], 0))
    ids = windows(1)[0][0]
    with pytest.raises(ValueError, match="no held-out tokens"):
        quality.evaluate_sae(model64, LAYER, sae, [(ids, len(ids) - 1)])


@pytest.mark.parametrize("declared,configured,warned", [
    ({"registry": "gemma-2-9b", "cfg.json": "gemma-2-9b"}, "google/gemma-2-9b-it",
     {"gemma-2-9b": ["registry", "cfg.json"]}),
    ({"registry": "meta-llama/Llama-3.1-8B"}, "meta-llama/Llama-3.1-8B-Instruct",
     {"meta-llama/Llama-3.1-8B": ["registry"]}),
    ({"registry": "Qwen/Qwen2.5-7B-Instruct", "cfg.json": "qwen2.5-7b-instruct"},
     "Qwen/Qwen2.5-7B-Instruct", {}),
    ({"cfg.json": "SmolLM2-135M-Instruct"}, "SmolLM2-135M-Instruct.Q4_1.gguf", {}),
    ({"cfg.json": "SmolLM2-135M"}, "SmolLM2-135M-Instruct.Q4_1.gguf",
     {"SmolLM2-135M": ["cfg.json"]}),
], ids=["gemma-scope-it", "llama-scope-base", "same-model", "gguf-file", "gguf-base"])
def test_declared_model_warnings(declared, configured, warned):
    got = sae_info._declared_warnings(declared, configured)
    assert {w["declared"]: w["sources"] for w in got} == warned
    assert all(w["kind"] == "declared_model" and w["configured"] == configured for w in got)


@pytest.mark.parametrize("figures,kinds", [
    ({"fraction_variance_explained": 0.49, "loss_recovered": 0.95},
     ["low_fraction_variance_explained"]),
    ({"fraction_variance_explained": 0.8, "loss_recovered": 0.69}, ["low_loss_recovered"]),
    ({"fraction_variance_explained": 0.5, "loss_recovered": 0.7}, []),
    ({"fraction_variance_explained": 0.9, "loss_recovered": math.nan}, ["low_loss_recovered"]),
], ids=["poor-fve", "poor-loss-recovered", "at-thresholds", "undefined"])
def test_quality_warnings(figures, kinds):
    got = sae_info.quality_warnings(dict(figures, eval_tokens=100))
    assert [w["kind"] for w in got] == kinds
    assert all(w["message"] and w["threshold"] in (0.5, 0.7) for w in got)


@pytest.mark.parametrize("dead,tokens,warned,rare", [
    (0.5, 4096, False, False), (0.51, 4096, True, False), (0.9, 200, True, True)],
    ids=["at-the-limit", "mostly-dead", "mostly-dead-on-too-few-tokens"])
def test_mostly_dead_saes_are_warned_about(dead, tokens, warned, rare):
    """More than half the features dead: a warning, for any SAE; with few firings expected per
    feature on the held-out tokens (tokens x L0 / width < 10), it says rare features look dead."""
    info = {"dead_fraction": dead, "eval_tokens": tokens, "l0": 32.0, "width": 4608,
            "fraction_variance_explained": 0.8, "loss_recovered": 0.9}
    got = sae_info.quality_warnings(info)
    assert [w["kind"] for w in got] == (["dead_features"] if warned else [])
    if warned:
        assert got[0]["value"] == dead and got[0]["threshold"] == sae_info.DEAD_LIMIT
        assert f"{dead:.1%} of the SAE's features are dead" in got[0]["message"]
        assert ("raise sae.eval_tokens" in got[0]["message"]) == rare


def test_held_out_records_are_never_trained_on():
    # records of 1-3 windows; a window's first token names its record, the second its piece
    pool = {"a": [[([i, j] + [0] * 18, 2) for j in range(1 + i % 3)] for i in range(30)],
            "b": [[([100 + i, 0] + [0] * 10, 4)] for i in range(10)]}
    held, train = quality.split_held_out(pool, ["a", "b"], ["a"], eval_tokens=100, seed=1)
    again, _ = quality.split_held_out(pool, ["a", "b"], ["a"], eval_tokens=100, seed=1)
    assert held == again, "seeded"
    assert sum(len(w) - s for w, s in held) >= 100
    # a record is held out or trained on as a whole, never split between the two
    held_recs, train_recs = {w[0] for w, _ in held}, {w[0] for w, _ in train}
    assert not held_recs & train_recs
    for rec in held_recs | train_recs:
        side = held if rec in held_recs else train
        n_pieces = 1 if rec >= 100 else 1 + rec % 3
        assert sorted(w[1] for w, _ in side if w[0] == rec) == list(range(n_pieces))
    assert train_recs | {r for r in held_recs if r < 100} == set(range(30))
    # at most a fifth of the training records are held out, however many tokens are asked for
    held, train = quality.split_held_out(pool, ["a"], ["a"], eval_tokens=10 ** 6, seed=0)
    assert (len({w[0] for w, _ in held}), len({w[0] for w, _ in train})) == (6, 24)


# --- the SAE must belong to the model and layer: the prepare_sae job ----------------------------

@pytest.fixture(scope="module")
def job(tiny_model_dir, tmp_path_factory):
    """A prepared tiny model and a materialised SFT set, as the prepare_sae job receives them."""
    from stsflow.data import corpora

    root = tmp_path_factory.mktemp("sae_job")
    source = {"local": {"path": str(tiny_model_dir)}}
    prepare_job.prepare_model(ModelSettings.with_defaults(source=source), root / "model")
    corpora.write_records(sft_records(12), root / "sft.parquet", {"source": "test"})
    mspec = ModelSettings.with_defaults(source=source, device="cpu", batch_size=4, max_length=256)
    return root, mspec


def run_job(job, sae, out, *, layer=LAYER, n_top=None, train=()):
    root, mspec = job
    spec = SaeSettings.with_defaults(**dict({"eval_tokens": 300}, **sae))
    assert without_leaks(  # the quality figures splice the SAE in with a hook, then remove it
        prepare_job.prepare_sae, root / "model", mspec, layer, spec,
        {"arith": ("sft", root / "sft.parquet")}, list(train), ["arith"], out,
        where=f"models.tiny.layers.{layer}.sae", n_top=n_top) > 0
    return json.loads((out / sae_info.MANIFEST).read_text())


def test_local_sae_gets_quality_figures_and_a_declared_model_warning(job, tiny_model_dir,
                                                                     tmp_path):
    path = saved_sae(tmp_path / "sae", model_name="google/gemma-2-9b")
    info = run_job(job, {"local": {"path": str(path)}}, tmp_path / "out")
    for key in sae_info.FIGURES:
        assert isinstance(info[key], (int, float)) and math.isfinite(info[key]), key
    assert info["eval_tokens"] >= 300 and info["eval_corpora"] == ["arith"]
    assert info["ce_zero_ablation"] != info["ce_clean"]
    assert info["loss_recovered"] == pytest.approx(
        (info["ce_zero_ablation"] - info["ce_with_sae"])
        / (info["ce_zero_ablation"] - info["ce_clean"]), abs=1e-3)
    declared = [w for w in info["warnings"] if w["kind"] == "declared_model"]
    assert len(declared) == 1, info["warnings"]
    assert (declared[0]["sources"], declared[0]["declared"], declared[0]["configured"]) == \
        (["cfg.json"], "google/gemma-2-9b", tiny_model_dir.name)
    assert "gemma-2-9b" in declared[0]["message"]
    summary = sae_info.quality_summary(tmp_path / "out")
    assert summary["warnings"] == info["warnings"]
    assert {k: summary[k] for k in sae_info.FIGURES} == {k: info[k] for k in sae_info.FIGURES}
    assert summary["declared_model"] == {"cfg.json": "google/gemma-2-9b"}


def test_declared_model_equal_to_the_configured_one_is_no_warning(job, tiny_model_dir, tmp_path):
    path = saved_sae(tmp_path / "sae", model_name=f"someorg/{tiny_model_dir.name}")
    info = run_job(job, {"local": {"path": str(path)}}, tmp_path / "out")
    assert not [w for w in info["warnings"] if w["kind"] == "declared_model"]


def test_wrong_hook_is_refused_by_the_job_with_the_validation_wording(job, project_cfg, tmp_path):
    path = saved_sae(tmp_path / "sae", hook="blocks.2.hook_resid_post")
    with pytest.raises(ConfigError) as exc:
        run_job(job, {"local": {"path": str(path)}}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    workdir, cfg = project_cfg
    cfg["models"]["tiny"]["layers"] = {LAYER: {"sae": {"local": {"path": str(path)}}}}
    with pytest.raises(ConfigError) as at_validation:
        stsconfig.validate(cfg, workdir)
    assert exc.value.problems == at_validation.value.problems
    assert exc.value.problems[0].startswith(f"{WHERE}.local.path: the SAE reads "
                                            "'blocks.2.hook_resid_post'")


def test_wrong_input_width_is_refused_by_the_job(job, tmp_path):
    path = saved_sae(tmp_path / "sae", d_in=16)
    with pytest.raises(ConfigError, match=r"d_in=16 differs from the model's hidden size 32"):
        run_job(job, {"local": {"path": str(path)}}, tmp_path / "out")


def test_accepted_hook_is_recorded(job, tmp_path):
    path = saved_sae(tmp_path / "sae", hook="blocks.2.hook_resid_post")
    info = run_job(job, {"local": {"path": str(path)},
                         "accept_hook": "blocks.2.hook_resid_post"}, tmp_path / "out")
    assert info["accepted_hook"] == info["hook_name"] == "blocks.2.hook_resid_post"
    assert [w["kind"] for w in info["warnings"]].count("accepted_hook") == 1


def test_n_top_larger_than_the_width_is_refused_by_the_job(job, tmp_path):
    path = saved_sae(tmp_path / "sae", width=64)
    with pytest.raises(ConfigError, match=r"sts\.n_top: 100 larger than the width 64"):
        run_job(job, {"local": {"path": str(path)}}, tmp_path / "out", n_top=[10, 100])


TRAIN = {"architecture": "topk", "width": 64, "k": 4, "l1_coefficient": 5.0, "tokens": 1024,
         "batch_tokens": 64, "lr": 3e-3, "context_length": 32, "seed": 0, "corpora": ["arith"]}


def test_trained_sae_gets_the_same_figures(job, tmp_path):
    info = run_job(job, {"train": TRAIN}, tmp_path / "out", train=["arith"])
    for key in sae_info.FIGURES:
        assert math.isfinite(info[key]), key
    assert info["l0"] <= 4 and info["hook_name"] == f"blocks.{LAYER}.hook_resid_post"
    assert info["fast_encoder"] is True
    assert isinstance(info["warnings"], list)


def test_a_trained_sae_is_reused_as_a_local_sae_of_its_layer_only(job, project_cfg,
                                                                   tiny_model_dir, tmp_path):
    """A trained SAE records its hook and model in cfg.json as sae-lens does, so its directory
    validates and prepares as a local SAE of the same layer without accept_hook (same encoder,
    no declared-model warning on the same model), and is refused at another layer by validation
    and by the job, with the same wording."""
    from stsflow.sae.prepare import load_sae

    trained = tmp_path / "trained"
    info = run_job(job, {"train": {**TRAIN, "b_dec_init": "mean"}}, trained, train=["arith"])
    assert info["train"]["b_dec_init"] == "mean"
    meta = json.loads((trained / "cfg.json").read_text())["metadata"]
    assert (meta["hook_name"], meta["model_name"]) == (f"blocks.{LAYER}.hook_resid_post",
                                                       tiny_model_dir.name)
    workdir, cfg = project_cfg
    cfg["models"]["tiny"]["layers"] = {LAYER: {"sae": {"local": {"path": str(trained)}}}}
    stsconfig.validate(cfg, workdir)
    info = run_job(job, {"local": {"path": str(trained)}}, tmp_path / "reused")
    assert info["hook_name"] == f"blocks.{LAYER}.hook_resid_post" and "accepted_hook" not in info
    assert not [w for w in info["warnings"] if w["kind"] in ("declared_model", "accepted_hook")]
    x = torch.randn(6, 32)
    assert torch.equal(load_sae(tmp_path / "reused")[0].encode(x), load_sae(trained)[0].encode(x))
    other = LAYER + 1
    cfg["models"]["tiny"]["layers"] = {other: {"sae": {"local": {"path": str(trained)}}}}
    with pytest.raises(ConfigError) as at_validation:
        stsconfig.validate(cfg, workdir)
    with pytest.raises(ConfigError) as in_job:
        run_job(job, {"local": {"path": str(trained)}}, tmp_path / "other", layer=other)
    where = f"models.tiny.layers.{other}.sae"
    assert in_job.value.problems == at_validation.value.problems == [
        f"{where}.local.path: the SAE reads 'blocks.{LAYER}.hook_resid_post', not the residual "
        f"stream after block {other} (blocks.{other}.hook_resid_post). Fix: use an SAE of "
        f"blocks.{other}.hook_resid_post or move it to layer {LAYER}, or, if you know it fits, "
        f"set {where}.accept_hook: 'blocks.{LAYER}.hook_resid_post' (recorded in the SAE's "
        "provenance)"]
    assert not (tmp_path / "other").exists()


def test_b_dec_init_mean_starts_the_decoder_bias_at_the_scaled_mean():
    """The scale as sae-lens estimates it (sqrt(d_in) over the mean norm of the first
    NORM_BATCHES batches), the bias at those batches' scaled mean, in float64 by hand; the
    batches are the ones the trainer would have used for its own estimate."""
    from sae_lens import SAETrainer
    from sae_lens.config import SAETrainerConfig

    from stsflow.sae import architectures, train

    spec = SaeSettings.with_defaults(train={"width": 16, "k": 2, "b_dec_init": "mean"}).train
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 32, generator=gen) * 3 + 5 for _ in range(train.NORM_BATCHES + 2)]
    data = iter(batches)
    sae = architectures.ARCHITECTURES["topk"].training(32, spec, "cpu")
    trainer = SAETrainer(SAETrainerConfig(total_training_samples=16, train_batch_size_samples=8,
                                          lr_end=1e-4), sae, data)
    train._init_b_dec_to_mean(trainer, data)
    x = np.concatenate([b.numpy() for b in batches[:train.NORM_BATCHES]]).astype(np.float64)
    factor = np.sqrt(32) / np.linalg.norm(x, axis=1).mean()
    assert trainer.activation_scaler.scaling_factor == pytest.approx(factor, rel=1e-6)
    np.testing.assert_allclose(sae.b_dec.detach().numpy(), (x * factor).mean(0), rtol=1e-5)
    assert torch.equal(next(data), batches[train.NORM_BATCHES])


def test_b_dec_init_reaches_the_job_only_when_mean():
    """At zeros (sae-lens's own initialisation, the behaviour before the key) the rules leave it
    out of prepare_sae's parameters, so SAEs trained before it existed are not trained again."""
    from stsflow.config.settings import SaeSettings, SaeTrainSettings, build, defaults

    train = defaults("$defs.sae.train")
    assert train["b_dec_init"] == "zeros"
    assert "b_dec_init" not in SaeSettings.params({"name": "s", "train": train})["train"]
    mean = SaeSettings.params({"name": "s", "train": {**train, "b_dec_init": "mean"}})
    assert mean["train"]["b_dec_init"] == "mean" and "name" not in mean
    without = {k: v for k, v in train.items() if k != "b_dec_init"}
    assert build(SaeTrainSettings, without, "train") == build(SaeTrainSettings, train, "train")


@pytest.fixture
def project_cfg(tiny_model_dir, tmp_path):
    """A minimal valid config around the tiny local model (for the validation wording)."""
    from conftest import domain_records, write_jsonl

    write_jsonl(tmp_path / "sft.jsonl", sft_records(6))
    write_jsonl(tmp_path / "d.jsonl", domain_records("law", 6))
    cfg = {"models": {"tiny": {"source": {"local": {"path": str(tiny_model_dir)}},
                               "layers": {LAYER: {"sae": {"train": {}}}}}},
           "sft": {"arith": {"source": {"local": {"path": "sft.jsonl"}}}},
           "domains": {"law": {"test": {"local": {"path": "d.jsonl"}},
                               "demos": {"local": {"path": "d.jsonl"}}}},
           "sts": {"n_top": [5]}}
    return tmp_path, copy.deepcopy(cfg)


@pytest.fixture
def fake_registry(monkeypatch):
    """A registry SAE whose config says ``cfg``: the hub is not reachable in tests. Fetching the
    weights returns a random SAE when ``weights`` is set, and fails the test otherwise."""
    import sae_lens.loading.pretrained_sae_loaders as loaders
    from conftest import make_sae
    from sae_lens import SAE

    if facts.sae_registry() is None:
        pytest.skip("sae-lens (and its registry file) is not installed")
    state = {"cfg": None, "weights": False}
    monkeypatch.setattr(loaders, "load_sae_config_from_huggingface",
                        lambda release, sae_id: copy.deepcopy(state["cfg"]))

    def weights(cls, release, sae_id, **kw):
        if not state["weights"]:
            pytest.fail("the weights were fetched before the SAE was checked")
        return make_sae(d_in=32, width=64)

    monkeypatch.setattr(SAE, "from_pretrained", classmethod(weights))
    return state


GEMMA_IT = {"release": "gemma-scope-9b-it-res", "sae_id": "layer_20/width_16k/average_l0_14"}


def test_registry_sae_is_refused_before_its_weights_are_fetched(fake_registry):
    fake_registry["cfg"] = {"d_in": 3584, "d_sae": 16384, "metadata": {
        "hook_name": "blocks.20.hook_resid_post", "model_name": "gemma-2-9b"}}
    with pytest.raises(ConfigError) as exc:
        prepare.fetch_pretrained(SaeSettings.with_defaults(registry=GEMMA_IT), layer=LAYER,
                                 hidden_size=32, where=WHERE, n_top=[100, 20000])
    problems = exc.value.problems
    assert [p.split(":")[0] for p in problems] == [f"{WHERE}.registry.sae_id"] * 2 + ["sts.n_top"]
    assert "the SAE reads 'blocks.20.hook_resid_post'" in problems[0]
    assert f"set {WHERE}.accept_hook: 'blocks.20.hook_resid_post'" in problems[0]
    assert "d_in=3584 differs from the model's hidden size 32" in problems[1]
    assert problems[2].startswith("sts.n_top: 20000 larger than the width 16384")


def test_registry_sae_of_the_layer_records_the_declared_model(fake_registry):
    fake_registry.update(weights=True, cfg={"d_in": 32, "d_sae": 64, "metadata": {
        "hook_name": f"blocks.{LAYER}.hook_resid_post", "model_name": "gemma-2-9b"}})
    sae, info = prepare.fetch_pretrained(SaeSettings.with_defaults(registry=GEMMA_IT),
                                         layer=LAYER, hidden_size=32, where=WHERE, n_top=[64])
    assert info["declared_model"] == {"registry": "gemma-2-9b", "cfg.json": "gemma-2-9b"}
    assert info["hook_name"] == f"blocks.{LAYER}.hook_resid_post" and "accepted_hook" not in info
    assert (info["kind"], info["release"], info["sae_id"]) == ("registry", *GEMMA_IT.values())


def test_registry_sae_through_the_job_is_saved_and_loads_back(job, fake_registry, tmp_path):
    """prepare_sae on a registry SAE (what the presets use): checked, saved into the prepared
    directory, measured, and loadable by extraction with the same encoder output."""
    from stsflow.sae.prepare import load_sae

    fake_registry.update(weights=True, cfg={"d_in": 32, "d_sae": 64, "metadata": {
        "hook_name": f"blocks.{LAYER}.hook_resid_post", "model_name": "gemma-2-9b"}})
    out = tmp_path / "out"
    info = run_job(job, {"registry": GEMMA_IT}, out, n_top=[8])
    assert (info["kind"], info["release"], info["sae_id"]) == ("registry", *GEMMA_IT.values())
    assert (out / "cfg.json").is_file() and math.isfinite(info["fraction_variance_explained"])
    assert any(w["kind"] == "declared_model" for w in info["warnings"])
    sae, sinfo = load_sae(out)  # the exported fast encoder
    from sae_lens import SAE

    saved = SAE.load_from_disk(str(out))  # the sae-lens files save_model wrote
    x = torch.randn(5, 32)
    got = sae.encode(x)
    assert got.shape == (5, 64) and sinfo["kind"] == "registry"
    assert torch.allclose(got, saved.encode(x).to(got.dtype), atol=1e-5)
