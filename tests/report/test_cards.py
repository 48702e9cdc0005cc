"""Feature cards against direct computations: contexts and frequencies against a dense forward
pass per query and a brute-force search, the logit lens against the norm and head in float64, the
overlap marks, the Neuronpedia address from the sae-lens registry, the job and `stsflow cards`."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from conftest import (
    dense_query_features,
    domain_records,
    make_sae,
    saved_sae,
    sft_records,
    without_leaks,
)

from stsflow.features import extract
from stsflow.io.files import read_metadata
from stsflow.report import cards as C
from stsflow.models.tap import final_norm
from stsflow.report.lens import feature_logits, top_tokens
from stsflow.scores.shift import ranked
from stsflow.text.segments import Segmenter

LAYER = 1


@pytest.fixture(scope="module")
def corpora(tiny, tmp_path_factory):
    model, tok = tiny
    sae = make_sae(width=64)
    seg = Segmenter.for_tokenizer(tok, True)
    d = tmp_path_factory.mktemp("cards")
    queries = {("sft", "math"): [(i, seg.query(r, "sft")) for i, r in enumerate(sft_records(8))],
               ("domain", "law"): [(i, seg.query(r, "domain"))
                                   for i, r in enumerate(domain_records("law", 6))]}
    shards = {}
    for (kind, name), qs in queries.items():
        shards[(kind, name)] = d / f"{name}.parquet"
        extract.extract(model, sae, LAYER, qs, seg.head(), shards[(kind, name)],
                        d / f"{name}.stats.parquet", batch_size=3, feat_dtype="float32",
                        log=lambda *a: None)
    return dict(model=model, tok=tok, sae=sae, seg=seg, queries=queries, shards=shards)


def reference(c, kind, name, dim, k, window):
    """(frequency, mean, contexts) of one dimension by brute force: every counted token of every
    query, ordered by activation, then document, then position."""
    import pyarrow.parquet as pq

    counted = pq.read_table(c["shards"][(kind, name)], columns=["doc_id", "pos", "counted"])
    flags = {(r["doc_id"], r["pos"]): r["counted"] for r in counted.to_pylist()}
    acts, found = [], []
    for doc, q in c["queries"][(kind, name)]:
        feats = dense_query_features(c["model"], c["sae"], c["seg"].head(), q, LAYER)
        for pos in range(len(q)):
            if flags[(doc, pos)]:
                a = feats[pos, dim]
                acts.append(a)
                if a != 0:
                    found.append((-a, doc, pos, q[max(pos - window, 0):pos], q[pos],
                                  q[pos + 1:pos + window + 1]))
    acts = np.array(acts)
    return len(acts), (acts != 0).mean(), acts.mean(), sorted(found)[:k]


def test_contexts_and_frequencies_match_a_direct_search(corpora):
    c = corpora
    dims = np.array([3, 17, 40])
    for kind, name in c["shards"]:
        stats, ctx = C.scan_corpus(c["shards"][(kind, name)], dims, contexts=3, window=4)
        for d in dims:
            n, freq, mean, want = reference(c, kind, name, int(d), 3, 4)
            got_n, got_freq, got_mean, _ = stats[int(d)]
            assert got_n == n > 0
            assert got_freq == pytest.approx(freq, abs=1e-12)
            assert got_mean == pytest.approx(mean, rel=1e-4)
            assert len(ctx[int(d)]) == len(want)
            for got, (neg, doc, pos, before, tok, after) in zip(ctx[int(d)], want):
                assert got[0] == pytest.approx(-neg, rel=1e-4)
                assert got[1:] == (doc, pos, list(before), tok, list(after))


def test_card_dims_marks_the_overlap_of_sets():
    def shift(values):
        v = np.asarray(values, dtype=float)
        return pl.from_arrow(ranked(v, -v))

    tables = {"predicted": shift([5, 4, 3, 0, 0, 1]), "true-lora": shift([0, 9, 0, 8, 7, 0])}
    cards = C.card_dims(tables, 3)
    got = {(r["set"], r["dim"]): (r["rank"], r["also_in"]) for r in cards.iter_rows(named=True)}
    assert got == {("predicted", 0): (1, []), ("predicted", 1): (2, ["true-lora"]),
                   ("predicted", 2): (3, []), ("true-lora", 1): (1, ["predicted"]),
                   ("true-lora", 3): (2, []), ("true-lora", 4): (3, [])}
    assert C.set_name("s2") == "predicted" and C.set_name("true-lora-s2") == "true-lora"
    # D_N as the scores define it (against scores.shift.shifted_dims): a shift that moved two
    # dimensions has no third card at N = 3, a tie straddling the cut none of its dimensions
    from stsflow.scores.shift import shifted_dims

    tables = {"predicted": shift([5, 0, 0, 2, 0, 0]), "true-lora": shift([4, 3, 3, 3, 0, 1])}
    cards = C.card_dims(tables, 3)
    for name, t in tables.items():
        want = shifted_dims(t.to_arrow(), 3).tolist()
        assert sorted(cards.filter(pl.col("set") == name)["dim"].to_list()) == want
    assert sorted(cards["dim"].to_list()) == [0, 0, 3]


def test_logit_lens_matches_norm_and_head_in_float64(tiny):
    model, tok = tiny
    norm = final_norm(model)
    g = torch.Generator().manual_seed(1)
    saved = norm.weight.detach().clone()
    with torch.no_grad():  # a non-trivial gain, so a lens that skipped it would differ
        norm.weight.copy_(torch.rand(norm.weight.shape, generator=g) + 0.5)
    try:
        dirs = torch.randn(3, model.config.hidden_size, generator=g)
        got = feature_logits(model, dirs, chunk=7).double().numpy()
        x = dirs.double().numpy()
        eps = model.config.rms_norm_eps
        gain = norm.weight.detach().double().numpy()
        normed = x / np.sqrt((x ** 2).mean(1, keepdims=True) + eps) * gain
        want = normed @ model.get_output_embeddings().weight.detach().double().numpy().T
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        up, down = top_tokens(torch.from_numpy(want), 4, lambda ids: f"t{ids[0]}")
        for row, u, dn in zip(want, up, down):
            assert [t for t, _ in u] == [f"t{i}" for i in np.argsort(-row, kind="stable")[:4]]
            assert [t for t, _ in dn] == [f"t{i}" for i in np.argsort(row, kind="stable")[:4]]
    finally:
        with torch.no_grad():
            norm.weight.copy_(saved)


def test_logit_lens_of_a_layernorm_model_drops_the_norm_bias():
    """GPT-2's final LayerNorm: mean removed, scaled, gained; its bias (one vector for every
    feature) left out, as the head's would be; rows beyond the tokenizer's vocabulary dropped."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2,
                                       n_positions=32)).eval()
    norm = final_norm(model)
    assert norm is model.transformer.ln_f
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_(0, 3.0)  # large: a lens that kept it would rank by the bias
    dirs = torch.randn(4, 16)
    got = feature_logits(model, dirs, vocab=37).double().numpy()
    x = dirs.double().numpy()
    z = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + norm.eps)
    want = (z * norm.weight.detach().double().numpy()) @ \
        model.get_output_embeddings().weight.detach().double().numpy()[:37].T
    assert got.shape == (4, 37)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    chunked = feature_logits(model, dirs, vocab=37, chunk=16).double().numpy()  # 16 + 16 + 5
    np.testing.assert_allclose(chunked, want, rtol=1e-5, atol=1e-5)


def test_neuronpedia_address_comes_from_the_sae_lens_registry():
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    release, sae_id = "gemma-scope-9b-it-res-canonical", "layer_20/width_16k/canonical"
    np_id = get_pretrained_saes_directory()[release].neuronpedia_id[sae_id]
    assert C.neuronpedia_base({"kind": "registry", "release": release, "sae_id": sae_id}) \
        == f"https://www.neuronpedia.org/{np_id}"
    assert C.neuronpedia_base({"kind": "train"}) is None
    assert C.neuronpedia_base({"kind": "registry", "release": "no-such-release",
                               "sae_id": "x"}) is None


@pytest.fixture(scope="module")
def cards_file(corpora, tiny_model_dir, tmp_path_factory):
    """The cards job on the tiny model: a saved SAE, one predicted and one true shift table."""
    from stsflow.config.settings import CardSettings, ModelSettings
    from stsflow.io.files import write_parquet
    from stsflow.jobs.cards import cards
    from stsflow.sae.info import MANIFEST

    d = tmp_path_factory.mktemp("cards_job")
    sae_dir = saved_sae(d / "sae", width=64)
    (sae_dir / MANIFEST).write_text(json.dumps({"kind": "train", "path": ".", "width": 64}))
    rng = np.random.default_rng(0)
    shifts = {}
    for name in ("s0", "true-lora-s0"):
        v = rng.random(64)
        shifts[name] = d / f"{name}.parquet"
        write_parquet(ranked(v, v - 0.5), shifts[name])
    out = d / "results" / "cards" / "tiny" / "L1" / "main" / "math" / "s0.parquet"
    model_dir = d / "model"
    model_dir.mkdir()
    (model_dir / "stsflow_model.json").write_text(json.dumps({"kind": "local", "path": str(
        tiny_model_dir), "architecture": "LlamaForCausalLM"}))
    without_leaks(cards, shifts, corpora["shards"], sae_dir, model_dir, out,
          settings=CardSettings.with_defaults(n_top=5, contexts=2, window=3, lens_tokens=4),
          model=ModelSettings.with_defaults(source={}, device="cpu"),
          keys={"model": "tiny", "layer": 1, "sae": "main", "sft": "math", "seed": 0})
    return out, shifts, sae_dir


def test_cards_job_writes_every_part_of_a_card(cards_file, tiny):
    out, shifts, sae_dir = cards_file
    df = pl.read_parquet(out)
    assert df.height == 10 and set(df["set"]) == {"predicted", "true-lora"}
    assert df.select("model", "layer", "sae", "sft", "seed").unique().rows() == \
        [("tiny", 1, "main", "math", 0)]
    r = df.filter(pl.col("set") == "predicted", pl.col("rank") == 1).row(0, named=True)
    top = pl.read_parquet(shifts["s0"]).filter(pl.col("rank") == 1).row(0, named=True)
    assert (r["dim"], r["shift"], r["mean_diff"]) == (top["dim"], top["shift"],
                                                       top["mean_diff"])
    assert [c["corpus"] for c in r["corpora"]] == ["math", "law"]
    assert all(c["kind"] in ("sft", "domain") for c in r["contexts"])
    assert len(r["promotes"]) == 4 and len(r["suppresses"]) == 4
    assert r["promotes"][0]["logit"] >= r["promotes"][-1]["logit"] > r["suppresses"][-1]["logit"]
    # the lens of the saved decoder row, through the tiny model's norm and head
    from safetensors.torch import load_file

    model, tok = tiny
    w = load_file(str(sae_dir / "sae_weights.safetensors"))["W_dec"][[r["dim"]]]
    logits = feature_logits(model, w)[0]
    assert r["promotes"][0]["logit"] == pytest.approx(float(logits.max()), rel=1e-5)
    assert r["promotes"][0]["token"] == tok.decode([int(logits.argmax())])
    assert r["neuronpedia"] is None
    meta = read_metadata(out)
    assert meta["shifts"] == ["predicted", "true-lora"] and meta["corpora"] == [
        "sft:math", "domain:law"]


def test_stsflow_cards_prints_a_dimension(cards_file, capsys):
    from stsflow.cli import main

    out, _, _ = cards_file
    results = out.parents[5]
    dim = int(pl.read_parquet(out).filter(pl.col("rank") == 1)["dim"][0])
    assert main(["cards", str(results), "--dim", str(dim), "--set", "predicted"]) == 0
    text = capsys.readouterr().out
    assert f"dimension {dim}" in text and "promotes" in text and "law" in text
    assert main(["cards", str(results), "--top", "2"]) == 0
    assert capsys.readouterr().out.count("dimension") == 4  # 2 per set
    assert main(["cards", str(results), "--model", "nope"]) == 1
    assert "no card matches" in capsys.readouterr().err
    assert main(["cards", str(results.parent / "elsewhere")]) == 1
    assert "no feature cards" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["registry", "local"])
def test_cards_job_reads_registry_and_local_saes(kind, corpora, tiny_model_dir, tmp_path):
    """The job with the two other kinds of prepared SAE: a registry release hosted on
    Neuronpedia (each card links its page) and a local folder (the decoder read where the
    manifest points, not from the prepared directory)."""
    from safetensors.torch import load_file
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    from stsflow.config.settings import CardSettings, ModelSettings
    from stsflow.io.files import write_parquet
    from stsflow.jobs.cards import cards
    from stsflow.sae.info import MANIFEST

    release, sae_id = "gemma-scope-9b-it-res-canonical", "layer_20/width_16k/canonical"
    weights = saved_sae(tmp_path / "weights", width=64)
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    info = ({"kind": "registry", "release": release, "sae_id": sae_id, "path": "."}
            if kind == "registry" else {"kind": "local", "path": str(weights)})
    if kind == "registry":  # a registry SAE is saved inside its prepared directory
        for f in weights.iterdir():
            (prepared / f.name).write_bytes(f.read_bytes())
    (prepared / MANIFEST).write_text(json.dumps(info))
    shift = tmp_path / "s0.parquet"
    v = np.random.default_rng(1).random(64)
    write_parquet(ranked(v, v), shift)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "stsflow_model.json").write_text(json.dumps({"kind": "local", "path": str(
        tiny_model_dir)}))
    out = tmp_path / "cards.parquet"
    cards({"s0": shift}, corpora["shards"], prepared, model_dir, out,
          settings=CardSettings.with_defaults(n_top=3, contexts=1, window=2, lens_tokens=2),
          model=ModelSettings.with_defaults(source={}, device="cpu"),
          keys={"model": "tiny", "layer": 1, "sae": "x", "sft": "math", "seed": 0})
    df = pl.read_parquet(out)
    if kind == "registry":
        np_id = get_pretrained_saes_directory()[release].neuronpedia_id[sae_id]
        assert df["neuronpedia"].to_list() == [
            f"https://www.neuronpedia.org/{np_id}/{d}" for d in df["dim"].to_list()]
    else:
        assert df["neuronpedia"].null_count() == df.height
    model = corpora["model"]
    w = load_file(str(weights / "sae_weights.safetensors"))["W_dec"][df["dim"].to_list()]
    top = feature_logits(model, w).max(dim=1).values
    assert [r[0]["logit"] for r in df["promotes"].to_list()] == pytest.approx(
        top.tolist(), rel=1e-5)
