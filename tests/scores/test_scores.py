"""STS numbers against a direct dense float64 computation, query alignment, shard contract."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import dense_query_features, domain_records, make_sae, sft_records

from stsflow import scores
from stsflow.features import extract, shards
from stsflow.features.stats import Stats
from stsflow.io.files import read_metadata
from stsflow.text.segments import Segmenter

LAYER = 1


def dense_features(model, sae, prefix, query):
    return dense_query_features(model, sae, prefix, query, LAYER)


@pytest.fixture(scope="module")
def run(tiny, tmp_path_factory):
    model, tok = tiny
    sae = make_sae(width=64)
    seg = Segmenter.for_tokenizer(tok, True)
    d = tmp_path_factory.mktemp("scores")
    sft = sft_records(10)
    demos_idx = [0, 3]
    sft_q = [(i, seg.query(r, "sft")) for i, r in enumerate(sft)]
    sft_icl_q = [q for q in sft_q if q[0] not in demos_idx]
    sft_ctx = seg.context([sft[i] for i in demos_idx], "sft")
    dom = domain_records("law", 6)
    dom_demos = domain_records("law", 2, offset=50)
    dom_q = [(i, seg.query(r, "domain")) for i, r in enumerate(dom)]
    dom_ctx = seg.context(dom_demos, "domain")
    kw = dict(batch_size=3, feat_dtype="float32", log=lambda *a: None)
    paths = {}
    for name, queries, prefix, ref in (
            ("sft_plain", sft_q, seg.head(), None),
            ("sft_icl", sft_icl_q, sft_ctx, "sft_plain"),
            ("dom_plain", dom_q, seg.head(), None),
            ("dom_icl", dom_q, dom_ctx, "dom_plain")):
        paths[name] = d / f"{name}.parquet"
        extract.extract(model, sae, LAYER, queries, prefix, paths[name], d / f"{name}.stats.parquet",
                        reference=paths[ref] if ref else None, **kw)
    return dict(model=model, sae=sae, seg=seg, d=d, paths=paths, sft_q=sft_icl_q, sft_ctx=sft_ctx,
                dom_q=dom_q, dom_ctx=dom_ctx)


def test_sts_matches_direct_dense_computation(run):
    model, sae, seg = run["model"], run["sae"], run["seg"]
    head = seg.head()
    # Step 1 directly: shift_j = mean over aligned query tokens of (h_icl - h_plain)^2.
    diffs = np.concatenate([dense_features(model, sae, run["sft_ctx"], q)
                            - dense_features(model, sae, head, q) for _, q in run["sft_q"]])
    shift_direct = (diffs ** 2).mean(0)
    icl = Stats.read(run["d"] / "sft_icl.stats.parquet")
    table = scores.shift_table(icl)
    np.testing.assert_allclose(table["shift"].to_numpy(), shift_direct, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(table["mean_diff"].to_numpy(), diffs.mean(0), rtol=1e-4, atol=1e-6)
    for n_top in (5, 20):
        dims = np.argsort(-shift_direct, kind="stable")[:n_top]
        np.testing.assert_array_equal(scores.top_dims(table, n_top), np.sort(dims))
        # Step 2 directly on the domain.
        plain = np.concatenate([dense_features(model, sae, head, q) for _, q in run["dom_q"]])
        with_ctx = np.concatenate([dense_features(model, sae, run["dom_ctx"], q)
                                   for _, q in run["dom_q"]])
        direct = {"sts_act": plain[:, dims].sum(1).mean(),
                  "sts_icl": ((with_ctx - plain)[:, dims] ** 2).sum(1).mean(),
                  "sts_sq": (plain[:, dims] ** 2).mean(0).mean()}
        got = scores.sts_scores(np.sort(dims), Stats.read(run["d"] / "dom_plain.stats.parquet"),
                                Stats.read(run["d"] / "dom_icl.stats.parquet"))
        for key, value in direct.items():
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
        assert got["n_tokens"] == plain.shape[0]


def test_plain_and_icl_see_identical_query_tokens(run):
    for kind in ("sft", "dom"):
        p = pq.read_table(run["paths"][f"{kind}_plain"]).to_pandas()
        i = pq.read_table(run["paths"][f"{kind}_icl"]).to_pandas()
        merged = i.merge(p, on=["doc_id", "pos"], suffixes=("_icl", "_plain"))
        assert len(merged) == len(i) > 0
        assert (merged.token_id_icl == merged.token_id_plain).all()


def test_misaligned_reference_is_rejected(run, tmp_path):
    model, sae = run["model"], run["sae"]
    shifted = [(doc, q[1:] + q[:1]) for doc, q in run["dom_q"]]  # same docs, other tokens
    with pytest.raises(ValueError, match="not aligned"):
        extract.extract(model, sae, LAYER, shifted, run["dom_ctx"], tmp_path / "x.parquet",
                        tmp_path / "x.stats.parquet", reference=run["paths"]["dom_plain"],
                        feat_dtype="float32", log=lambda *a: None)
    assert not (tmp_path / "x.parquet").exists()  # nothing half-written is left behind
    assert not list(tmp_path.glob(".x.parquet*"))


def test_shard_follows_storage_contract(run):
    path = run["paths"]["dom_icl"]
    table = pq.read_table(path)
    assert table.schema.names == ["doc_id", "pos", "token_id", "feat_idx", "feat_val", "counted"]
    assert table.schema.field("feat_idx").type.value_type == pa.int32()
    assert table.num_rows == sum(len(q) for _, q in run["dom_q"])
    for idx, val in zip(table["feat_idx"].to_pylist(), table["feat_val"].to_pylist()):
        assert idx == sorted(idx) and len(idx) == len(val) > 0
        assert all(v != 0 for v in val)
    meta = read_metadata(path)
    assert meta["width"] == 64 and meta["layer"] == LAYER and meta["n_tokens"] == table.num_rows
    assert meta["prefix_tokens"] == len(run["dom_ctx"])


def test_float16_shards_and_stats_agree(run, tmp_path):
    """Statistics are computed from exactly the stored (rounded) values."""
    model, sae, seg = run["model"], run["sae"], run["seg"]
    stats = extract.extract(model, sae, LAYER, run["dom_q"], seg.head(), tmp_path / "h.parquet",
                            tmp_path / "h.stats.parquet", feat_dtype="float16", log=lambda *a: None)
    _, _, _, csr = shards.read_shard(tmp_path / "h.parquet")
    np.testing.assert_allclose(np.asarray(csr.sum(0)).ravel(), stats.sum, rtol=1e-6, atol=1e-6)
    assert pq.read_table(tmp_path / "h.parquet").schema.field("feat_val").type.value_type == pa.float16()


def test_true_shift_overlap_and_oracle_sts_match_direct_computation(run, tmp_path):
    """Fine-tuned model vs base on the SFT queries: true shift, overlap with the predicted top-N,
    and STS with the true dimensions, each against a direct dense computation."""
    from conftest import make_model

    model, sae, seg = run["model"], run["sae"], run["seg"]
    tuned = make_model(model.config.vocab_size)
    tuned.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in tuned.model.layers[0].parameters():
            p.add_(0.05 * torch.randn_like(p))
    head = seg.head()
    queries = run["sft_q"]
    extract.extract(tuned, sae, LAYER, queries, head, tmp_path / "tuned.parquet",
                    tmp_path / "tuned.stats.parquet", reference=run["paths"]["sft_plain"],
                    feat_dtype="float32", log=lambda *a: None)
    true = scores.shift_table(Stats.read(tmp_path / "tuned.stats.parquet"))
    diffs = np.concatenate([dense_features(tuned, sae, head, q) - dense_features(model, sae, head, q)
                            for _, q in queries])
    true_direct = (diffs ** 2).mean(0)
    np.testing.assert_allclose(true["shift"].to_numpy(), true_direct, rtol=1e-4, atol=1e-6)
    predicted = scores.shift_table(Stats.read(run["d"] / "sft_icl.stats.parquet"))
    plain = np.concatenate([dense_features(model, sae, head, q) for _, q in run["dom_q"]])
    def d_n(v, n):  # D_N: moved, and at most n dimensions shifted at least as much
        return sorted(j for j in range(len(v)) if v[j] > 0 and (v >= v[j]).sum() <= n)

    for n_top in (5, 20):
        pred_dims = set(d_n(predicted["shift"].to_numpy(), n_top))
        true_dims = d_n(true["shift"].to_numpy(), n_top)
        assert scores.overlap(predicted, true, n_top) == len(pred_dims & set(true_dims)) / n_top
        oracle = scores.sts_scores(np.array(true_dims),
                                   Stats.read(run["d"] / "dom_plain.stats.parquet"),
                                   Stats.read(run["d"] / "dom_icl.stats.parquet"))
        assert oracle["sts_act"] == pytest.approx(plain[:, true_dims].sum(1).mean(), rel=1e-4)


def test_the_registered_predictors_are_listed_and_are_the_table_columns():
    """`stsflow registry` lists every registered predictor (what report.primary.predictor may
    name, with their _oracle rows); the STS table's columns follow the registry."""
    from stsflow.cli import registry_text
    from stsflow.jobs.reduce import STS_COLUMNS

    listed = registry_text().split("predictors (")[1].split("\n\n")[0].splitlines()[1:]
    assert [line.split()[0] for line in listed] == list(scores.PREDICTORS)
    pre = scores.pretraining_predictors()
    assert STS_COLUMNS[6:6 + len(pre)] == pre
    assert set(scores.PREDICTORS) - set(pre) == {"before_after"}  # needs the tuned model
    assert list(scores.PREDICTORS)[:3] == ["sts_act", "sts_icl", "sts_sq"]  # the paper's first
    with pytest.raises(ValueError, match="twice"):
        scores.register_predictor("sts_act", family="sts", oracle=True, about="")(
            lambda *a: 0.0)
