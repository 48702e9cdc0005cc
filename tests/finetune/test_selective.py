"""Selective fine-tuning (finetune.methods: [sae_select]): the maps start at zero, only they
train, h_S(z) is the SAE's encoding of the chosen dimensions, S is the top-K of the predicted
shift (or K drawn with the seed), and a run saved through the job path loads back as the model
it trained, with the true shift extracted through its maps. References are direct computations:
sae-lens's own encode, numpy's ordering, finite differences."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import make_model, make_sae, make_tokenizer, sft_records

from stsflow.config.settings import FinetuneSettings, ModelSettings
from stsflow.workflow.bundles import FinetuneFiles
from stsflow.data import corpora
from stsflow.finetune import selective
from stsflow.finetune.checkpoint import read_checkpoint_meta, save_checkpoint
from stsflow.finetune.train import finetune
from stsflow.jobs import prepare as prepare_job
from stsflow.jobs import validate as validate_job
from stsflow.models.load import load_model
from stsflow.models.tap import LayerTap
from stsflow.sae.encoder import SparseEncoder
from stsflow.scores.shift import ranked

MSPEC = {"source": {"local": {"path": "unused: the jobs read the prepared directory"}},
         "dtype": "float32", "device": "cpu", "chat_template": True, "batch_size": 3,
         "max_length": 512}
RECIPE = {"epochs": 1, "lr": 5e-2, "batch_size": 4, "micro_batch_size": 2, "max_length": 128,
          "warmup_ratio": 0.0}


def site(layer, sae, dims, sae_dir="unused"):
    return selective.Site(layer, "main", sae_dir, sae, np.asarray(dims))


def ids_of(tok, text="Question: 3 plus 4?"):
    return torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def test_maps_start_at_zero_so_the_model_is_the_base(tok):
    base = make_model(len(tok), seed=0, n_layers=2)
    wrapped = make_model(len(tok), seed=0, n_layers=2)
    selective.attach(wrapped, [site(0, make_sae(), [1, 5, 9]), site(1, make_sae(seed=1), [2, 3])])
    ids = ids_of(tok)
    with torch.no_grad():
        assert torch.equal(wrapped(input_ids=ids).logits, base(input_ids=ids).logits)
    assert selective.n_trainable(wrapped) == (3 + 2) * 32
    assert all(float(b.W.detach().abs().max()) == 0.0 for b in selective.blocks(wrapped).values())


@pytest.mark.parametrize("fast", [False, True])
def test_block_output_is_z_plus_h_S_of_z_times_W(tok, fast):
    """After the wrapped block: z + sae.encode(z)[:, S] @ W, with sae-lens's own encode as the
    reference, for the sae-lens SAE and for the exported encoder extraction uses."""
    base = make_model(len(tok), seed=0, n_layers=2)
    sae = make_sae(width=64, k=6, seed=2)
    enc = SparseEncoder.from_sae(sae) if fast else sae
    ids = ids_of(tok)
    with torch.no_grad():
        z = base(input_ids=ids, output_hidden_states=True).hidden_states[1]  # after block 0
        fired = (sae.encode(z) > 0).sum((0, 1))
    # three dimensions that fire on these tokens and two that do not
    dims = sorted(torch.argsort(-fired)[:3].tolist() + torch.argsort(fired)[:2].tolist())
    wrapped = make_model(len(tok), seed=0, n_layers=2)
    selective.attach(wrapped, [site(0, enc, dims)])
    W = torch.randn(len(dims), 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        selective.blocks(wrapped)[0].W.copy_(W)
        expected = z + sae.encode(z)[..., dims] @ W
        # what extraction and the evaluation's residual means read: the output of the block
        # in the model's list of layers (transformers' output_hidden_states records the wrapped
        # block's own output, by class, so it would miss the map)
        got = LayerTap(wrapped, 0).run(wrapped, input_ids=ids)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert float((got - z).abs().max()) > 1e-3  # the map did something


@pytest.mark.parametrize("fast", [False, True])
def test_gradients_reach_only_the_maps_and_cross_the_later_encoder(tok, fast):
    """Only W has gradients; W of layer 0 gets the gradient that flows through layer 1's
    encoder (checked against central finite differences of the loss, float64), with sae-lens's
    full encoding and with the exported encoder's chosen columns."""
    torch.manual_seed(0)
    model = make_model(len(tok), seed=0, n_layers=2).double()
    saes = [make_sae(seed=3).double(), make_sae(seed=4).double()]
    encs = [SparseEncoder.from_sae(s) for s in saes] if fast else saes
    ids = ids_of(tok)
    with torch.no_grad():  # three dimensions per layer that fire on these tokens
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
        dims = [torch.argsort(-(sae.encode(h) > 0).sum((0, 1)))[:3].sort().values.tolist()
                for sae, h in zip(saes, hs[1:3])]
    selective.attach(model, [site(0, encs[0], dims[0]), site(1, encs[1], dims[1])])
    b0, b1 = selective.blocks(model)[0], selective.blocks(model)[1]
    with torch.no_grad():
        b0.W.data = 0.3 * torch.randn(3, 32, dtype=torch.float64)
        b1.W.data = 0.3 * torch.randn(3, 32, dtype=torch.float64)

    def loss():
        logits = model(input_ids=ids).logits[0, :-1]
        return torch.nn.functional.cross_entropy(logits, ids[0, 1:])

    loss().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == {"model.layers.0.W", "model.layers.1.W"}
    assert all(not p.requires_grad for n, p in model.named_parameters() if not n.endswith(".W"))
    # the model's RMSNorm computes in float32 even in a float64 model: a step large enough for
    # float32 rounding to vanish, small enough for the curvature (central differences: eps²)
    eps = 1e-3
    for i, j in ((0, 0), (1, 5), (2, 31)):
        with torch.no_grad():
            b0.W[i, j] += eps
            up = float(loss())
            b0.W[i, j] -= 2 * eps
            down = float(loss())
            b0.W[i, j] += eps
        np.testing.assert_allclose(float(b0.W.grad[i, j]), (up - down) / (2 * eps),
                                   rtol=2e-3, atol=1e-7)
        assert abs(float(b0.W.grad[i, j])) > 1e-6


def test_maps_are_made_where_the_model_is(tok):
    """The model is on its device when the maps attach (a GPU in a cluster job): W and the
    chosen dimensions are created there, not on the CPU."""
    model = make_model(len(tok), seed=0, n_layers=2).to("meta")
    selective.attach(model, [site(1, make_sae(), [1, 2])])
    block = selective.blocks(model)[1]
    assert block.W.device.type == "meta" and block.dims.device.type == "meta"


def test_top_selection_is_the_top_k_of_the_shift_table():
    rng = np.random.default_rng(0)
    shift = rng.random(200)
    shift[[10, 11, 12]] = 5.0  # a tie at the top: lower indices first
    table = ranked(shift, rng.normal(size=200))
    got = selective.choose_dims(table, 20, "top", seed=0, layer=3)
    order = sorted(range(200), key=lambda i: (-shift[i], i))
    assert got.tolist() == sorted(order[:20])
    assert {10, 11, 12} <= set(got.tolist())
    assert selective.choose_dims(table, 2, "top", 0, 3).tolist() == [10, 11]


def test_random_selection_is_reproducible_by_seed_and_layer():
    table = ranked(np.arange(100, dtype=float), np.zeros(100))
    a = selective.choose_dims(table, 10, "random", seed=1, layer=12)
    assert a.tolist() == selective.choose_dims(table, 10, "random", seed=1, layer=12).tolist()
    assert len(set(a.tolist())) == 10 and a.tolist() == sorted(a.tolist())
    assert a.tolist() != selective.choose_dims(table, 10, "random", seed=2, layer=12).tolist()
    assert a.tolist() != selective.choose_dims(table, 10, "random", seed=1, layer=6).tolist()
    assert a.tolist() != selective.choose_dims(table, 10, "top", seed=1, layer=12).tolist()
    with pytest.raises(ValueError, match=r"finetune\.sae_select\.k: 101 exceeds the width 100"):
        selective.choose_dims(table, 101, "top", seed=1, layer=12)


# ----------------------------------------------------------------- the job path and checkpoints


@pytest.fixture(scope="module")
def job(tiny_model_dir, tmp_path_factory):
    """A prepared model, a prepared SAE at layer 1, a predicted shift table, an SFT set."""
    d = tmp_path_factory.mktemp("select")
    prepare_job.prepare_model(ModelSettings.with_defaults(
        source={"local": {"path": str(tiny_model_dir)}}), d / "model")
    sae = make_sae(width=64, k=6, seed=5)
    sae.save_model(str(d / "sae_files"))
    (d / "sae").mkdir()
    (d / "sae" / "stsflow_sae.json").write_text(json.dumps(
        {"kind": "local", "path": str(d / "sae_files"), "width": 64}))
    shift = np.random.default_rng(1).random(64)
    pq.write_table(ranked(shift, np.zeros(64)), d / "shift.parquet")
    corpora.write_records(sft_records(12), d / "sft.parquet")
    return dict(d=d, sae=sae, shift=shift)


def run_select(job, select, k, name, seed=0):
    d = job["d"]
    recipe = FinetuneSettings.with_defaults(
        f"sae_select-{select}-k{k}", seed, sae_select={"layers": [1], "saes": ["main"]}, **RECIPE)
    validate_job.finetune(d / "model", ModelSettings.with_defaults(**MSPEC), d / "sft.parquet",
                          recipe, d / name, d / f"{name}.history.parquet", threads=1,
                          inputs=FinetuneFiles(sites={1: {"sae": str(d / "sae"),
                                                          "shift": str(d / "shift.parquet")}}
                                               ).named())
    return d / name


def test_job_trains_the_top_k_maps_and_the_checkpoint_loads_them(job):
    d = job["d"]
    out = run_select(job, "top", 8, "sel-top")
    meta = read_checkpoint_meta(out)
    expected = sorted(np.argsort(-job["shift"], kind="stable")[:8].tolist())
    assert meta["dims"] == {"1": expected}
    assert meta["n_trainable"] == 8 * 32 and meta["adapter_type"] == "sae_select"
    assert [(s["layer"], s["k"]) for s in meta["sites"]] == [(1, 8)]
    assert (out / meta["sites"][0]["sae_dir"]).resolve() == (d / "sae").resolve()
    assert not (out / "model.safetensors").exists()  # the maps alone
    tuned, _, info = load_model(out, "float32", "cpu")
    base, tok, _ = load_model(d / "model", "float32", "cpu")
    block = selective.blocks(tuned)[1]
    assert block.dims.tolist() == expected and float(block.W.abs().max()) > 0
    plain = {k: v for k, v in tuned.state_dict().items() if not k.endswith((".W", ".dims"))}
    base_sd = base.state_dict()
    assert {k.replace(".block.", ".") for k in plain} == set(base_sd)
    assert all(torch.equal(v, base_sd[k.replace(".block.", ".")]) for k, v in plain.items())
    with torch.no_grad():
        ids = ids_of(tok)
        assert not torch.equal(tuned(input_ids=ids).logits, base(input_ids=ids).logits)
    hist = pq.read_table(d / "sel-top.history.parquet")
    assert hist.num_rows == 3 and info["method"] == "sae_select-top-k8"


def test_random_run_draws_its_dims_with_the_seed(job):
    a = read_checkpoint_meta(run_select(job, "random", 8, "sel-rand-a", seed=3))["dims"]["1"]
    b = read_checkpoint_meta(run_select(job, "random", 8, "sel-rand-b", seed=3))["dims"]["1"]
    table = pq.read_table(job["d"] / "shift.parquet")
    assert a == b == selective.choose_dims(table, 8, "random", seed=3, layer=1).tolist()


def test_checkpoint_loads_as_the_model_training_produced(tiny_model_dir, tmp_path, tok):
    """In memory after training, and loaded back from its checkpoint: the same logits."""
    prepare_job.prepare_model(ModelSettings.with_defaults(
        source={"local": {"path": str(tiny_model_dir)}}), tmp_path / "base")
    model, tok, _ = load_model(tmp_path / "base", "float32", "cpu")
    sae = make_sae(width=64, k=6, seed=6)
    sae.save_model(str(tmp_path / "sae_files"))
    (tmp_path / "sae").mkdir()
    (tmp_path / "sae" / "stsflow_sae.json").write_text(json.dumps(
        {"kind": "local", "path": str(tmp_path / "sae_files"), "width": 64}))
    sites = [selective.Site(1, "main", str(tmp_path / "sae"), sae, np.arange(0, 64, 4))]
    cfg = FinetuneSettings.with_defaults("sae_select-top-k16", 0,
                                         sae_select={"layers": [1], "saes": ["main"]}, **RECIPE)
    hist = finetune(model, tok, sft_records(8), cfg, use_chat_template=True, log=lambda s: None,
                    context={"sites": sites})
    assert hist["n_trainable"] == 16 * 32
    assert selective.n_trainable(hist["model"]) == 16 * 32  # the base stays frozen after training
    save_checkpoint(hist["model"], tok, tmp_path / "ckpt", {"method": cfg.method},
                    base_dir=tmp_path / "base")
    loaded, _, _ = load_model(tmp_path / "ckpt", "float32", "cpu")
    ids = ids_of(tok)
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, hist["model"](input_ids=ids).logits)
    # the SAE the maps read is checked: missing, then another one in its place
    manifest = (tmp_path / "sae" / "stsflow_sae.json").read_text()
    (tmp_path / "sae" / "stsflow_sae.json").unlink()
    with pytest.raises(FileNotFoundError, match="rerun its prepare_sae job"):
        load_model(tmp_path / "ckpt", "float32", "cpu")
    (tmp_path / "sae" / "stsflow_sae.json").write_text(manifest.replace('"width"', '"width" '))
    with pytest.raises(ValueError, match="trained with another SAE"):
        load_model(tmp_path / "ckpt", "float32", "cpu")


def test_recipe_gives_sites_to_sae_select_runs_only():
    with pytest.raises(ValueError, match="sae_select"):
        FinetuneSettings.with_defaults("lora", 0, sae_select={"layers": [1], "saes": ["m"]})
    with pytest.raises(ValueError, match="sae_select"):
        FinetuneSettings.with_defaults("sae_select-top-k8", 0)
    with pytest.raises(ValueError, match="unknown fine-tuning run method"):
        FinetuneSettings.with_defaults("sae_select-best-k8", 0)
    assert FinetuneSettings.with_defaults("lora", 0).sae_select is None


def test_shift_table_column_order_does_not_matter():
    """choose_dims reads dims by name: a table written in another row order gives the same S."""
    rng = np.random.default_rng(4)
    t = ranked(rng.random(50), np.zeros(50))
    perm = rng.permutation(50)
    shuffled = pa.table({c: t[c].to_numpy()[perm] for c in t.column_names})
    assert (selective.choose_dims(t, 7, "top", 0, 0).tolist()
            == selective.choose_dims(shuffled, 7, "top", 0, 0).tolist())


@pytest.mark.parametrize("architecture", ["topk", "relu", "jumprelu"])
def test_chosen_columns_equal_the_full_encoding_and_its_gradient(architecture):
    """SparseEncoder.selected against activations()[..., S]: values and gradient in x, for each
    gated activation (TopK with rescaling by the decoder norm, ReLU, JumpReLU)."""
    g = torch.Generator().manual_seed(0)
    d, width = 16, 48
    W_enc, b_enc, b_dec = (torch.randn(d, width, generator=g, dtype=torch.float64),
                           torch.randn(width, generator=g, dtype=torch.float64),
                           torch.randn(d, generator=g, dtype=torch.float64))
    kw = {"topk": dict(k=5, scale=torch.rand(width, generator=g, dtype=torch.float64) + 0.5),
          "relu": {}, "jumprelu": dict(threshold=torch.rand(width, generator=g,
                                                             dtype=torch.float64))}[architecture]
    enc = SparseEncoder(W_enc, b_enc, b_dec, activation=architecture, apply_b_dec=True, **kw)
    dims = torch.tensor([0, 3, 7, 11, 20, 33, 47])
    x = torch.randn(3, 9, d, generator=g, dtype=torch.float64, requires_grad=True)
    full = enc.activations(x).index_select(-1, dims)
    cols = enc.selected(x, dims)
    assert float((full != 0).sum()) > 0
    torch.testing.assert_close(cols, full, rtol=1e-12, atol=1e-12)
    w = torch.randn(cols.shape, generator=g, dtype=torch.float64)
    (g_full,) = torch.autograd.grad((full * w).sum(), x)
    (g_cols,) = torch.autograd.grad((cols * w).sum(), x)
    torch.testing.assert_close(g_cols, g_full, rtol=1e-12, atol=1e-12)
