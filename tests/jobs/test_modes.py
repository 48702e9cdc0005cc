"""Extraction modes through the job path (stsflow.jobs.extract.extract, what the rule runs): which
model, which prefix, which tokens count, which queries; the true shift on plain inputs; the
context guard. References are direct dense computations, independent of the extraction code."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import (
    direct_layer_sums,
    domain_records,
    hidden_states,
    make_sae,
    sft_records,
    without_leaks,
)

from stsflow import scores
from stsflow.config.settings import (
    CorpusSettings,
    ExtractSettings,
    FinetuneSettings,
    ModelSettings,
)
from stsflow.data import corpora
from stsflow.features.stats import Stats
from stsflow.io.files import read_metadata
from stsflow.jobs import extract as extract_job
from stsflow.jobs import prepare as prepare_job
from stsflow.jobs import reduce as reduce_job
from stsflow.jobs import validate as validate_job
from stsflow.mode import Mode, Shift
from stsflow.models.load import load_model
from stsflow.text import demos
from stsflow.text.segments import Segmenter

LAYER = 1
MSPEC = {"source": {"local": {"path": "unused: the jobs read the prepared directory"}},
         "dtype": "float32", "device": "cpu", "chat_template": True, "batch_size": 3,
         "max_length": 512}
STS = {"sft_tokens": 100000, "domain_tokens": 100000, "t": 2, "m": 2, "feat_dtype": "float32",
       "row_group_rows": 65536, "query_tokens": "content", "sample_seed": 0}


# ------------------------------------------------------------------------------- Mode, Shift


@pytest.mark.parametrize("text,kind,seed,method,demos", [
    ("plain", "plain", None, None, "none"),
    ("icl", "icl", None, None, "domain"),
    ("icl-s7", "icl", 7, None, "sft"),
    ("tuned-lora-s3", "tuned", 3, "lora", "none"),
    ("tuned-full-s0", "tuned", 0, "full", "none"),
])
def test_mode_parses_and_prints_back(text, kind, seed, method, demos):
    mode = Mode.parse(text)
    assert (mode.kind, mode.seed, mode.method, mode.demonstrations) == (kind, seed, method, demos)
    assert str(mode) == text


@pytest.mark.parametrize("bad", ["", "icl-", "icl-s", "tuned-lora", "tuned-qlora-s0", "plain-s1",
                                 "ICL", "tuned-lora-s0x"])
def test_mode_rejects_unknown_strings(bad):
    with pytest.raises(ValueError, match="unknown extraction mode"):
        Mode.parse(bad)


def test_modes_are_refused_on_the_wrong_corpus_kind():
    Mode.parse("icl").check_corpus("domain")
    Mode.parse("icl-s1").check_corpus("sft")
    Mode.parse("tuned-lora-s1").check_corpus("sft")
    for text, kind in (("icl", "sft"), ("icl-s1", "domain"), ("tuned-lora-s1", "domain")):
        with pytest.raises(ValueError, match="not defined"):
            Mode.parse(text).check_corpus(kind)


def test_shift_names():
    assert Shift.parse("s4") == Shift(4) and not Shift(4).true
    assert str(Shift.parse("s4").mode) == "icl-s4"
    true = Shift.parse("true-lora-s2")
    assert true.true and str(true.mode) == "tuned-lora-s2" and str(true) == "true-lora-s2"
    assert true.key() == {"method": "lora", "seed": 2}
    with pytest.raises(ValueError):
        Shift.parse("true-s2")


# ------------------------------------------------------------------------------- job fixtures


@pytest.fixture(scope="module")
def job(tiny, tiny_model_dir, tmp_path_factory):
    """A prepared model, a prepared SAE, a checkpoint identical to the base model, and
    materialised corpora, laid out as the workflow lays them out."""
    from stsflow.finetune.checkpoint import save_checkpoint

    model, tok = tiny
    d = tmp_path_factory.mktemp("modes")
    prepare_job.prepare_model(ModelSettings.with_defaults(
        source={"local": {"path": str(tiny_model_dir)}}), d / "model")
    sae = make_sae(width=64, k=6)
    sae.save_model(str(d / "sae_files"))
    (d / "sae").mkdir()
    (d / "sae" / "stsflow_sae.json").write_text(json.dumps(
        {"kind": "local", "path": str(d / "sae_files"), "width": 64}))
    save_checkpoint(model, tok, d / "tuned", {"method": "lora", "seed": 0,
                                              "base": {"kind": "local"}})
    corpora.write_records(sft_records(12), d / "sft.parquet")
    corpora.write_records(domain_records("law", 7), d / "law.test.parquet")
    corpora.write_records(domain_records("law", 3, offset=50), d / "law.demos.parquet")
    return dict(d=d, model=model, tok=tok, sae=sae, seg=Segmenter.for_tokenizer(tok, True))


def run_job(job, kind, mode, name, *, model="model", reference=None, sts=None, mspec=None,
            keep=False, test="law.test.parquet"):
    """The extract job on the fixture's files; ``keep`` keeps the residuals for a sweep;
    ``test``: another domain test file in the fixture's directory."""
    d = job["d"]
    data = ({"sft_items": d / "sft.parquet"} if kind == "sft"
            else {"test": d / test, "demos": d / "law.demos.parquet"})
    out = d / f"{name}.parquet"
    settings = ExtractSettings.with_defaults(kind, **(sts or STS))
    # every extraction through here also checks that the job leaves no forward hook behind
    assert without_leaks(
        extract_job.extract, d / model, d / "sae",
        ModelSettings.with_defaults(**(mspec or MSPEC)), LAYER, mode, data, settings, out,
        d / f"{name}.stats.parquet", reference=d / f"{reference}.parquet" if reference else None,
        panel_out=d / f"{name}.panel",
        panel_reference=d / f"{reference}.panel" if reference else None,
        corpus="arith" if kind == "sft" else "law", threads=1,
        resid_out=d / f"{name}.resid" if keep else None) > 0  # the layer tap's
    return out


def run_sweep(job, kind, mode, name, sae_dir, *, reference=None, sts=None):
    """The encode job (a sweep SAE) on the residuals ``run_job(..., keep=True)`` kept."""
    d = job["d"]
    without_leaks(  # no model runs; nor may the SAE keep a hook
        extract_job.encode_sweep, d / f"{name}.resid", sae_dir, mode,
        ExtractSettings.with_defaults(kind, **(sts or STS)),
        d / f"{name}.sweep.parquet", d / f"{name}.sweep.stats.parquet", d / f"{name}.sweep.panel",
        reference=d / f"{reference}.sweep.parquet" if reference else None,
        panel_reference=d / f"{reference}.sweep.panel" if reference else None,
        device="cpu", batch_size=4, threads=1)


def perturbed_checkpoint(job, scale: float, path, meta: dict):
    """A copy of the fixture model with its first block's weights perturbed (``scale`` × a
    standard normal draw), saved as a fine-tuning checkpoint at ``path``; returns the model."""
    from conftest import make_model

    from stsflow.finetune.checkpoint import save_checkpoint

    model = job["model"]
    tuned = make_model(model.config.vocab_size)
    tuned.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in tuned.model.layers[0].parameters():
            p.add_(scale * torch.randn_like(p))
    save_checkpoint(tuned, job["tok"], path, meta)
    return tuned


def dense(model, sae, prefix, query):
    """Layer output of one uncached full forward (output_hidden_states), SAE-encoded, float64."""
    with torch.no_grad():
        hs = hidden_states(model, input_ids=torch.tensor([prefix + query]))
        return sae.encode(hs[LAYER + 1][0, len(prefix):]).double().numpy()


# ------------------------------------------------------------------------------- the modes


def test_each_mode_has_the_right_prefix_and_model(job):
    seg, sft, law_demos = job["seg"], sft_records(12), domain_records("law", 3, offset=50)
    run_job(job, "sft", "plain", "sft_plain")
    run_job(job, "sft", "icl-s0", "sft_icl", reference="sft_plain")
    run_job(job, "sft", "tuned-lora-s0", "sft_tuned", model="tuned", reference="sft_plain")
    run_job(job, "domain", "plain", "law_plain")
    run_job(job, "domain", "icl", "law_icl", reference="law_plain")
    d = job["d"]
    meta = {n: read_metadata(d / f"{n}.parquet")
            for n in ("sft_plain", "sft_icl", "sft_tuned", "law_plain", "law_icl")}
    head = len(seg.head())
    demo_idx = demos.sft_demo_indices(12, 2, 0)
    assert meta["sft_plain"]["prefix_tokens"] == head and meta["sft_plain"]["demonstrations"] == []
    # the fine-tuned model runs on the plain input: no demonstrations (docs/method.md#true-shift)
    assert meta["sft_tuned"]["prefix_tokens"] == head
    assert meta["sft_tuned"]["demonstrations"] == []
    assert meta["sft_tuned"]["demonstrations_from"] == "none"
    assert meta["sft_tuned"]["model"]["kind"] == "checkpoint"
    assert meta["sft_tuned"]["model"]["method"] == "lora"
    assert meta["sft_plain"]["model"]["kind"] == "local"
    assert meta["sft_plain"]["n_queries"] == 12
    # the tuned run of seed 0 averages over the queries of icl-s0 (like-for-like overlap)
    assert meta["sft_tuned"]["n_queries"] == meta["sft_icl"]["n_queries"] == 10
    # t SFT demonstrations for SFT ICL, m worked examples for domain ICL
    assert meta["sft_icl"]["prefix_tokens"] == len(seg.context([sft[i] for i in demo_idx], "sft"))
    assert meta["sft_icl"]["demonstrations"] == [sft[i]["id"] for i in demo_idx]
    assert meta["sft_icl"]["n_queries"] == 10
    assert meta["law_icl"]["prefix_tokens"] == len(seg.context(law_demos[:2], "domain"))
    assert meta["law_icl"]["demonstrations"] == [r["question_id"] for r in law_demos[:2]]
    assert meta["law_plain"]["prefix_tokens"] == head


def test_a_token_budget_changes_the_batches_not_the_shard(job):
    """models.<m>.batch_tokens: the extraction's batches within the budget (down to one query
    each) write the same rows (query ids, positions, tokens, active features), with the values
    of fixed-size batches (float32 rounding apart), and the same statistics."""
    d = job["d"]
    run_job(job, "domain", "plain", "bt_free")
    run_job(job, "domain", "plain", "bt_tight", mspec=dict(MSPEC, batch_tokens=1))
    free, tight = (pq.read_table(d / f"{n}.parquet").sort_by([("doc_id", "ascending"),
                                                               ("pos", "ascending")])
                   for n in ("bt_free", "bt_tight"))
    assert free.num_rows == tight.num_rows > 0
    for col in ("doc_id", "pos", "token_id", "counted"):
        assert free[col].to_pylist() == tight[col].to_pylist(), col
    for x, y in zip(free["feat_val"].to_pylist(), tight["feat_val"].to_pylist()):
        np.testing.assert_allclose(y, x, rtol=1e-3, atol=1e-3)
    a, b = Stats.read(d / "bt_free.stats.parquet"), Stats.read(d / "bt_tight.stats.parquet")
    assert a.n_tokens == b.n_tokens
    np.testing.assert_allclose(b.sum, a.sum, rtol=1e-4, atol=1e-4)


def test_tuned_model_identical_to_base_gives_zero_true_shift(job):
    d = job["d"]
    for name, mode, model, ref in (("z_plain", "plain", "model", None),
                                   ("z_tuned", "tuned-lora-s0", "tuned", "z_plain")):
        run_job(job, "sft", mode, name, model=model, reference=ref)
    out = d / "z_true_shift.parquet"
    outs = {space: d / f"z_true_shift.{space}.parquet" for space in scores.SPACES}
    reduce_job.shift(d / "z_tuned.stats.parquet", d / "z_tuned.panel", outs, {"kind": "true"})
    for space, out in outs.items():  # the SAE's, the raw residual's and the random encoder's
        shift = pq.read_table(out)
        assert shift["shift"].to_numpy().max() == 0.0, space  # exactly: same weights and inputs
        assert np.all(shift["mean_diff"].to_numpy() == 0.0), space
    assert Stats.read(d / "z_tuned.stats.parquet").n_tokens > 0


def test_true_shift_is_tuned_plain_against_base_plain(job, tiny_model_dir, tmp_path):
    """A perturbed checkpoint: the true shift equals E(h(x;Θ') − h(x;Θ))², no demonstrations."""
    model, sae, seg = job["model"], job["sae"], job["seg"]
    tuned = perturbed_checkpoint(job, 0.05, job["d"] / "tuned_p", {"method": "full", "seed": 1})
    run_job(job, "sft", "plain", "p_plain")
    run_job(job, "sft", "tuned-full-s1", "p_tuned", model="tuned_p", reference="p_plain")
    reduce_job.shift(job["d"] / "p_tuned.stats.parquet", job["d"] / "p_tuned.panel",
                     {"sae": tmp_path / "true.parquet"}, {})
    got = pq.read_table(tmp_path / "true.parquet")["shift"].to_numpy()
    head = seg.head()
    diffs, masks = [], []
    demo_idx = set(demos.sft_demo_indices(12, 2, 1))  # seed 1's demonstrations left out
    for i, rec in enumerate(sft_records(12)):
        if i in demo_idx:
            continue
        ids, counted = seg.query_parts(rec, "sft")
        diffs.append(dense(tuned, sae, head, ids) - dense(model, sae, head, ids))
        masks.append(np.asarray(counted))
    diffs = np.concatenate(diffs)[np.concatenate(masks)]
    np.testing.assert_allclose(got, (diffs ** 2).mean(0), rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------------------- counted tokens


def _user_text_mask(seg, rec, kind):
    """Content positions found independently of the tokenizer's offsets: the fixture tokenizer
    has one token per character of plain text, so the user's text is the len(text) tokens after
    the tokens of the turn opening."""
    from stsflow.text.prompts import user_text

    ids = seg.query(rec, kind)
    n_open = len(seg._ids(seg.layout.user_open))
    text = user_text(rec, kind)
    assert len(ids) == n_open + len(text) + len(seg._ids(seg.layout.user_close_and_gen))
    mask = np.zeros(len(ids), dtype=bool)
    mask[n_open:n_open + len(text)] = True
    return ids, mask


@pytest.mark.parametrize("query_tokens", ["content", "turn"])
def test_query_tokens_setting_against_dense_computation(job, query_tokens):
    model, sae, seg = job["model"], job["sae"], job["seg"]
    sts = dict(STS, query_tokens=query_tokens)
    tag = f"qt_{query_tokens}"
    run_job(job, "sft", "plain", f"{tag}_sft_plain", sts=sts)
    run_job(job, "sft", "icl-s0", f"{tag}_sft_icl", reference=f"{tag}_sft_plain", sts=sts)
    run_job(job, "domain", "plain", f"{tag}_law_plain", sts=sts)
    run_job(job, "domain", "icl", f"{tag}_law_icl", reference=f"{tag}_law_plain", sts=sts)
    d = job["d"]
    reduce_job.shift(d / f"{tag}_sft_icl.stats.parquet", d / f"{tag}_sft_icl.panel",
                     {"sae": d / f"{tag}_shift.parquet"}, {})
    shift = pq.read_table(d / f"{tag}_shift.parquet")

    head, sft = seg.head(), sft_records(12)
    demo_idx = demos.sft_demo_indices(12, 2, 0)
    ctx = seg.context([sft[i] for i in demo_idx], "sft")
    diffs = []
    for i, rec in enumerate(sft):
        if i in demo_idx:
            continue
        ids, mask = _user_text_mask(seg, rec, "sft")
        keep = mask if query_tokens == "content" else np.ones_like(mask)
        diffs.append((dense(model, sae, ctx, ids) - dense(model, sae, head, ids))[keep])
    direct_shift = (np.concatenate(diffs) ** 2).mean(0)
    np.testing.assert_allclose(shift["shift"].to_numpy(), direct_shift, rtol=1e-4, atol=1e-7)

    law_ctx = seg.context(domain_records("law", 3, offset=50)[:2], "domain")
    plain_rows, icl_rows = [], []
    for rec in domain_records("law", 7):
        ids, mask = _user_text_mask(seg, rec, "domain")
        keep = mask if query_tokens == "content" else np.ones_like(mask)
        plain_rows.append(dense(model, sae, head, ids)[keep])
        icl_rows.append(dense(model, sae, law_ctx, ids)[keep])
    plain, icl = np.concatenate(plain_rows), np.concatenate(icl_rows)
    for n_top in (5, 20):
        dims = np.argsort(-direct_shift, kind="stable")[:n_top]
        got = scores.sts_scores(scores.top_dims(shift, n_top),
                                Stats.read(d / f"{tag}_law_plain.stats.parquet"),
                                Stats.read(d / f"{tag}_law_icl.stats.parquet"))
        assert got["n_tokens"] == plain.shape[0]
        assert got["sts_act"] == pytest.approx(plain[:, dims].sum(1).mean(), rel=1e-4)
        assert got["sts_icl"] == pytest.approx(((icl - plain)[:, dims] ** 2).sum(1).mean(),
                                               rel=1e-4)
        assert got["sts_sq"] == pytest.approx((plain[:, dims] ** 2).mean(0).mean(), rel=1e-4)
    # the shard keeps every token of the turn and marks the counted ones
    table = pq.read_table(d / f"{tag}_law_plain.parquet")
    assert table.num_rows == sum(len(seg.query(r, "domain")) for r in domain_records("law", 7))
    assert int(np.sum(table["counted"].to_numpy())) == plain.shape[0]


def resid(model, prefix, query):
    """Residual after block LAYER of one uncached full forward (output_hidden_states), float64."""
    hs = hidden_states(model, input_ids=torch.tensor([prefix + query]))
    return hs[LAYER + 1][0, len(prefix):].double().numpy()


def test_baseline_predictors_against_dense_computation(job):
    """Raw-residual STS, random-encoder STS, representation similarity, the probes and the
    random-dimension draws, scored by the reduction job from the panels the extraction job
    wrote, against the same definitions computed from a direct dense forward pass."""
    from stsflow.features.panel_gather import RandomEncoder
    from stsflow.scores.controls import random_dim_sets
    from stsflow.scores.probes import probe_score

    model, sae, seg = job["model"], job["sae"], job["seg"]
    d = job["d"]
    run_job(job, "sft", "plain", "bp_sft_plain")
    run_job(job, "sft", "icl-s0", "bp_sft_icl", reference="bp_sft_plain")
    run_job(job, "domain", "plain", "bp_law_plain")
    run_job(job, "domain", "icl", "bp_law_icl", reference="bp_law_plain")
    shifts = {sp: d / f"bp_shift.{sp}.parquet" for sp in (*scores.SPACES, "unaligned")}
    reduce_job.shift(d / "bp_sft_icl.stats.parquet", d / "bp_sft_icl.panel", shifts, {},
                     unaligned={"shard": d / "bp_sft_icl.parquet", "panel": d / "bp_sft_icl.panel",
                                "plain_shard": d / "bp_sft_plain.parquet",
                                "plain_panel": d / "bp_sft_plain.panel"})

    head, sft = seg.head(), sft_records(12)
    demo_idx = demos.sft_demo_indices(12, 2, 0)
    ctx = seg.context([sft[i] for i in demo_idx], "sft")
    law_ctx = seg.context(domain_records("law", 3, offset=50)[:2], "domain")
    enc = RandomEncoder(32, 64, 6, seed=0, b_dec=sae.b_dec)  # the SAE's width, k and input

    def rows(records, kind, prefix):
        """(token rows, per-query mean rows) of the counted tokens of each record."""
        toks, pooled, pooled_sae = [], [], []
        for rec in records:
            ids, mask = _user_text_mask(seg, rec, kind)
            z = resid(model, prefix, ids)[mask]
            toks.append(z)
            pooled.append(z.mean(0))
            pooled_sae.append(dense(model, sae, prefix, ids)[mask].mean(0))
        return np.concatenate(toks), np.array(pooled), np.array(pooled_sae)

    sft_q = [r for i, r in enumerate(sft) if i not in demo_idx]
    z_sft, _, _ = rows(sft_q, "sft", head)
    z_sft_icl, _, _ = rows(sft_q, "sft", ctx)
    _, pooled_sft, pooled_sft_sae = rows(sft, "sft", head)
    law = domain_records("law", 7)
    z_law, pooled_law, pooled_law_sae = rows(law, "domain", head)
    z_law_icl, _, _ = rows(law, "domain", law_ctx)

    def encode(z):
        return enc.encode(torch.from_numpy(z).float()).double().numpy()

    shift_direct = {"resid": ((z_sft_icl - z_sft) ** 2).mean(0),
                    "randenc": ((encode(z_sft_icl) - encode(z_sft)) ** 2).mean(0)}
    for sp, direct in shift_direct.items():
        np.testing.assert_allclose(pq.read_table(shifts[sp])["shift"].to_numpy(), direct,
                                   rtol=1e-4, atol=1e-7, err_msg=sp)
    out = d / "bp_sts.parquet"
    settings = {"control_seed": 0, "random_draws": 4, "probe_folds": 3}
    n_top = 5
    reduce_job.sts(shifts, {"stats": d / "bp_law_plain.stats.parquet",
                            "panel": d / "bp_law_plain.panel",
                            "sft_panel": d / "bp_sft_plain.panel",
                            "sft_stats": d / "bp_sft_plain.stats.parquet"},
                   {"stats": d / "bp_law_icl.stats.parquet", "panel": d / "bp_law_icl.panel"},
                   n_top, {"domain": "law"}, out, oracle=False, settings=settings)
    got = pq.read_table(out).to_pylist()[0]
    values = {"resid": (np.abs(z_law), z_law_icl - z_law),
              "randenc": (encode(z_law), encode(z_law_icl) - encode(z_law))}
    for sp, (act_rows, diff_rows) in values.items():
        dims = np.argsort(-shift_direct[sp], kind="stable")[:n_top]
        assert got[f"sts_act_{sp}"] == pytest.approx(act_rows[:, dims].sum(1).mean(), rel=1e-4)
        assert got[f"sts_icl_{sp}"] == pytest.approx(
            (diff_rows[:, dims] ** 2).sum(1).mean(), rel=1e-4)
    mean_law, mean_sft = z_law.mean(0), rows(sft, "sft", head)[0].mean(0)
    cos = mean_law @ mean_sft / np.linalg.norm(mean_law) / np.linalg.norm(mean_sft)
    assert got["repsim"] == pytest.approx(cos, rel=1e-5)
    assert got["probe_resid"] == pytest.approx(probe_score(pooled_sft, pooled_law, 3, 0),
                                               rel=1e-4, abs=1e-6)
    assert got["probe_sae"] == pytest.approx(probe_score(pooled_sft_sae, pooled_law_sae, 3, 0),
                                             rel=1e-4, abs=1e-6)
    plain_sae = np.concatenate([dense(model, sae, head, _user_text_mask(seg, r, "domain")[0])[
        _user_text_mask(seg, r, "domain")[1]] for r in law])
    # the authors' unaligned rows: for each ICL query (document order) its prefix then its
    # turn, row r of the ICL stream against row r of the plain stream
    def stream(prefix):
        rows = []
        for i, rec in enumerate(sft):
            if i in demo_idx:
                continue
            with torch.no_grad():
                hs = hidden_states(model, input_ids=torch.tensor([prefix]))
                pre = sae.encode(hs[LAYER + 1][0]).double().numpy()
            rows += [pre,
                     dense(model, sae, prefix, seg.query(rec, "sft"))]
        return np.concatenate(rows)
    a, b = stream(ctx), stream(head)
    r = min(len(a), len(b))
    unal = ((a[:r] - b[:r]) ** 2).mean(0)
    np.testing.assert_allclose(pq.read_table(shifts["unaligned"])["shift"].to_numpy(), unal,
                               rtol=1e-4, atol=1e-7)
    # the notebook's row cap (its [:10000]): here 40 rows, inside the first query's prefix
    from stsflow.features.panel import read_prefix
    from stsflow.scores.unaligned import unaligned_shift
    capped = unaligned_shift(d / "bp_sft_icl.parquet", read_prefix(d / "bp_sft_icl.panel", 64),
                             d / "bp_sft_plain.parquet", read_prefix(d / "bp_sft_plain.panel", 64),
                             64, max_rows=40)
    np.testing.assert_allclose(capped["shift"].to_numpy(), ((a[:40] - b[:40]) ** 2).mean(0),
                               rtol=1e-4, atol=1e-7)
    dims_u = np.argsort(-unal, kind="stable")[:n_top]
    assert got["sts_sq_unaligned"] == pytest.approx((plain_sae[:, dims_u] ** 2).mean(0).mean(),
                                                    rel=1e-4)
    icl_sae = np.concatenate([dense(model, sae, law_ctx, _user_text_mask(seg, r, "domain")[0])[
        _user_text_mask(seg, r, "domain")[1]] for r in law])
    # the draws' pool: the dimensions that fire on a counted token of the SFT set's plain run
    # (every record) or move with the demonstrations, from the dense forward passes
    fires = np.concatenate([dense(model, sae, head, _user_text_mask(seg, r, "sft")[0])[
        _user_text_mask(seg, r, "sft")[1]] for r in sft])
    sae_shift = pq.read_table(shifts["sae"])["shift"].to_numpy()
    pool = np.flatnonzero((fires != 0).any(0) | (sae_shift > 0))
    assert got["n_live"] == len(pool) and got["n_effective"] == n_top
    sets = random_dim_sets(pool, n_top, 4, 0, n_top)
    assert all(len(s) == n_top and set(s) <= set(pool) for s in sets)
    np.testing.assert_allclose(got["rand_act"], [plain_sae[:, s].sum(1).mean() for s in sets],
                               rtol=1e-4)
    np.testing.assert_allclose(got["rand_icl"], [((icl_sae - plain_sae)[:, s] ** 2).sum(1).mean()
                                                 for s in sets], rtol=1e-4, atol=1e-9)
    assert n_top < len(pool) < 64  # dead dimensions exist here, and are never drawn


def test_gradients_job_samples_its_examples_and_feeds_grad_sim(job):
    """The gradients job through the rule's entry point: an SFT set's examples are a seeded
    sample of grad_examples records, a domain's are its worked examples; grad_sim is the cosine
    of the two files' vectors, scored by the reduction job."""
    from stsflow.features import gradients as gr

    d = job["d"]
    settings = {"grad_examples": 5, "grad_dim": 64, "control_seed": 0, "sample_seed": 2}
    mspec = ModelSettings.with_defaults(**MSPEC)
    without_leaks(extract_job.gradients, d / "model", mspec, "sft", d / "sft.parquet", settings,
                  ["q_proj", "v_proj"], d / "g_sft.parquet", threads=1)
    extract_job.gradients(d / "model", mspec, "domain", d / "law.demos.parquet", settings,
                          ["q_proj", "v_proj"], d / "g_law.parquet", threads=1)
    meta = read_metadata(d / "g_sft.parquet")
    want = corpora.sample_records(sft_records(12), 5, 2)[0]
    assert meta["records"] == [r["id"] for r in want] and meta["n_examples"] == 5
    assert meta["rank"] == gr.RANK and meta["dim"] == 64
    assert read_metadata(d / "g_law.parquet")["n_examples"] == 3  # every worked example
    a = pq.read_table(d / "g_sft.parquet")["value"].to_numpy()
    b = pq.read_table(d / "g_law.parquet")["value"].to_numpy()
    x = scores.ScoreInputs(n_top=1, shifts={}, plain={}, icl={}, sft_grad=d / "g_sft.parquet",
                           domain_grad=d / "g_law.parquet")
    assert scores.PREDICTORS["grad_sim"].fn(x) == pytest.approx(
        a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_content_and_turn_differ_by_the_scaffolding(job):
    seg = job["seg"]
    rec = sft_records(1)[0]
    ids, counted = seg.query_parts(rec, "sft")
    assert ids == seg.query(rec, "sft")
    _, mask = _user_text_mask(seg, rec, "sft")
    assert counted == mask.tolist() and 0 < sum(counted) < len(ids)


# ------------------------------------------------------------------------------- sampling


def test_token_budget_takes_a_seeded_sample_shared_by_plain_and_icl(job):
    sts = dict(STS, sft_tokens=150, sample_seed=3)
    run_job(job, "sft", "plain", "b_plain", sts=sts)
    run_job(job, "sft", "icl-s0", "b_icl", reference="b_plain", sts=sts)
    d = job["d"]
    plain_docs = sorted(set(pq.read_table(d / "b_plain.parquet")["doc_id"].to_pylist()))
    icl_docs = sorted(set(pq.read_table(d / "b_icl.parquet")["doc_id"].to_pylist()))
    assert plain_docs != list(range(len(plain_docs)))  # not the first rows
    demo_idx = set(demos.sft_demo_indices(12, 2, 0))
    assert icl_docs == [i for i in plain_docs if i not in demo_idx]
    # independent re-derivation: seeded permutation, whole queries until the counted budget
    seg, total, expect = job["seg"], 0, []
    for i in np.random.default_rng(3).permutation(12):
        if total >= 150:
            break
        expect.append(int(i))
        total += sum(seg.query_parts(sft_records(12)[int(i)], "sft")[1])
    assert plain_docs == sorted(expect)
    sel = read_metadata(d / "b_plain.parquet")["selection"]
    assert sel["sample_seed"] == 3 and sel["n_selected"] == len(expect) and sel["n_available"] == 12


def test_max_items_takes_a_seeded_sample():
    recs = [{"id": i} for i in range(50)]
    got, info = corpora.sample_records(recs, 10, seed=5)
    ids = [r["id"] for r in got]
    assert len(set(ids)) == 10 and ids == sorted(ids) and info["rows"] == ids  # corpus order
    assert ids != list(range(10)) and max(ids) >= 10  # not the first rows
    assert corpora.sample_records(recs, 10, seed=5)[0] == got  # reproducible
    assert [r["id"] for r in corpora.sample_records(recs, 10, seed=6)[0]] != ids
    assert corpora.sample_records(recs, None, seed=5)[0] == recs
    assert corpora.sample_records(recs, 80, seed=5)[1]["rows"] == "all"


def test_materialized_domain_records_the_sample(tmp_path):
    from conftest import write_jsonl

    write_jsonl(tmp_path / "t.jsonl", domain_records("law", 20))
    write_jsonl(tmp_path / "d.jsonl", domain_records("law", 6, offset=50))
    spec = {"test": {"local": {"path": str(tmp_path / "t.jsonl")}},
            "demos": {"local": {"path": str(tmp_path / "d.jsonl")}}, "schema": "mmlu_pro",
            "fields": {}, "max_items": 5, "sample_seed": 1}
    prepare_job.materialize_domain(CorpusSettings.from_config(spec, "domains.law"),
                                   tmp_path / "t.parquet", tmp_path / "d.parquet")
    meta = read_metadata(tmp_path / "t.parquet")
    assert meta["sample"]["seed"] == 1 and len(meta["sample"]["rows"]) == 5
    assert len(corpora.read_records(tmp_path / "d.parquet")) == 6  # demos are never sampled


# ------------------------------------------------------------------------------- context guard


def test_demonstrations_that_cannot_fit_fail_before_any_forward(job, tmp_path):
    """A model with a short context: the domain's plain job already refuses, naming the domain,
    the numbers and the fix; nothing is written."""
    from transformers import AutoConfig

    from stsflow.finetune.checkpoint import save_checkpoint

    model, tok = job["model"], job["tok"]
    short = tmp_path / "short"
    save_checkpoint(model, tok, short, {"method": "full", "seed": 0})
    cfg = AutoConfig.from_pretrained(short)
    law = domain_records("law", 7)
    head = len(job["seg"].head())
    longest = max(len(job["seg"].query(r, "domain")) for r in law)
    cfg.max_position_embeddings = head + longest + 5  # plain fits, two demonstrations do not
    cfg.save_pretrained(short)
    job["d"].joinpath("short").symlink_to(short)
    with pytest.raises(extract_job.ContextError) as err:
        run_job(job, "domain", "plain", "short_plain", model="short")
    msg = str(err.value)
    assert "domains.law" in msg and "icl" in msg and "max_position_embeddings" in msg
    assert "sts.m" in msg and str(head + longest + 5) in msg
    assert not (job["d"] / "short_plain.parquet").exists()
    # sts.context_check: warn goes on and records the overflow in the shard
    run_job(job, "domain", "plain", "short_warn", model="short",
            sts=dict(STS, context_check="warn"))
    recorded = read_metadata(job["d"] / "short_warn.parquet")["context_overflow"]
    assert len(recorded) == 1 and "domains.law" in recorded[0]


def test_context_overflow_reaches_the_coverage_table_and_the_report(job, tmp_path):
    """With sts.context_check: warn, each run records how many of its queries exceed the
    context with its prefix (counted here from the token lengths directly); the coverage job
    carries each run's share, and the report's warnings name the run, the share and the
    limit."""
    import polars as pl
    from transformers import AutoConfig

    from stsflow.finetune.checkpoint import save_checkpoint
    from stsflow.report.caveats import context_warnings

    model, tok, seg = job["model"], job["tok"], job["seg"]
    short = tmp_path / "short"
    save_checkpoint(model, tok, short, {"method": "full", "seed": 0})
    law = [dict(r, question=r["question"] + " why" * (3 * i))
           for i, r in enumerate(domain_records("law", 7))]  # queries of 7 lengths
    corpora.write_records(law, job["d"] / "law_ov.test.parquet")
    lengths = sorted(len(seg.query(r, "domain")) for r in law)
    icl_prefix = len(seg.context(domain_records("law", 2, offset=50), "domain"))
    limit = icl_prefix + lengths[3]  # the 3 longest queries overflow with ICL
    cfg = AutoConfig.from_pretrained(short)
    cfg.max_position_embeddings = limit
    cfg.save_pretrained(short)
    job["d"].joinpath("short_ov").symlink_to(short)
    warn = dict(STS, context_check="warn")
    run_job(job, "domain", "plain", "ov_plain", model="short_ov", sts=warn,
            test="law_ov.test.parquet")
    run_job(job, "domain", "icl", "ov_icl", model="short_ov", sts=warn, reference="ov_plain",
            test="law_ov.test.parquet")
    head = len(seg.head())
    want = {"plain": sum(head + n > limit for n in lengths),
            "icl": sum(icl_prefix + n > limit for n in lengths)}
    assert want == {"plain": 0, "icl": 3}
    ctx = read_metadata(job["d"] / "ov_icl.stats.parquet")["context"]
    assert ctx["limit"] == limit and ctx["runs"]["icl"] == {
        "prefix_tokens": icl_prefix, "n_queries": 7, "n_overflow": want["icl"]}
    d = job["d"]
    reduce_job.coverage_table("m", "s", {("domain", "law", "plain"): d / "ov_plain.stats.parquet",
                                         ("domain", "law", "icl"): d / "ov_icl.stats.parquet"},
                              {}, tmp_path / "cov.parquet", tmp_path / "cov.csv")
    cov = pl.read_parquet(tmp_path / "cov.parquet").sort("mode")
    assert cov.columns == reduce_job.COVERAGE_COLUMNS
    assert cov["mode"].to_list() == ["icl", "plain"]
    assert cov["n_context_overflow"].to_list() == [want["icl"], 0]
    assert cov["share_context_overflow"].to_list() == pytest.approx([want["icl"] / 7, 0.0])
    assert cov["context_limit"].to_list() == [limit, limit]
    (said,) = context_warnings(cov)
    assert f"{want['icl']} of 7 queries" in said and "(icl run)" in said and str(limit) in said
    assert "ran past the positions it was trained on" in said


def test_a_tuned_run_must_see_the_base_plain_runs_prompt(job, tmp_path):
    """A tuned (or post-hoc) model whose tokenizer renders another chat head is refused before
    its model loads, naming both heads and the fix; with the base's tokenizer it runs."""
    from conftest import CHATML, make_tokenizer

    from stsflow.finetune.checkpoint import save_checkpoint

    run_job(job, "sft", "plain", "pr_plain")
    other = make_tokenizer()
    other.chat_template = CHATML.replace("You are tiny.", "You are a vendor model.")
    save_checkpoint(job["model"], other, tmp_path / "vendor", {"method": "lora", "seed": 0,
                                                                "base": {"kind": "local"}})
    job["d"].joinpath("pr_vendor").symlink_to(tmp_path / "vendor")
    with pytest.raises(ValueError, match="prompt head.*vendor model.*base plain run.*tiny") as e:
        run_job(job, "sft", "tuned-lora-s0", "pr_tuned_bad", model="pr_vendor",
                reference="pr_plain")
    assert "tokenizer files" in str(e.value)
    assert not (job["d"] / "pr_tuned_bad.parquet").exists()
    meta = read_metadata(job["d"] / "pr_plain.parquet")
    from stsflow.jobs.extract import prefix_digest

    assert meta["prefix_sha256"] == prefix_digest(job["seg"].head())
    run_job(job, "sft", "tuned-lora-s0", "pr_tuned", model="tuned", reference="pr_plain")


def test_sliding_window_lowers_the_context_limit():
    from transformers import Gemma2Config, LlamaConfig, Qwen2Config

    from stsflow.models.load import context_limit

    assert context_limit(LlamaConfig(max_position_embeddings=4096), 3) == (4096,
                                                                           "max_position_embeddings")
    g = Gemma2Config(max_position_embeddings=8192, sliding_window=4096, num_hidden_layers=4)
    assert context_limit(g, 3) == (4096, "sliding_window")
    q = Qwen2Config(max_position_embeddings=32768, sliding_window=4096, use_sliding_window=False)
    assert context_limit(q, 3)[0] == 32768


def test_answer_cut_count(job):
    from stsflow.finetune.train import count_answer_cut

    seg, recs = job["seg"], sft_records(6)
    lengths = [len(seg.head() + seg.query(r, "sft") + seg.response(r, "sft")) for r in recs]
    limit = sorted(lengths)[2]
    assert count_answer_cut(recs, seg, limit) == sum(n > limit for n in lengths)
    assert count_answer_cut(recs, seg, None) == 0


def test_registered_methods_name_the_modes_and_shifts():
    """Run names, modes and shifts are built from the fine-tuning registry: every registered
    method and variant parses and round-trips, and nothing else does; `stsflow registry` lists
    every method a config may name."""
    import re

    from stsflow.cli import registry_text
    from stsflow.config.settings import schema_section
    from stsflow.finetune.registry import methods
    from stsflow.mode import RunMethod, mode_pattern, run_methods, shift_pattern

    ft = schema_section("finetune")["properties"]
    listed = registry_text().split("fine-tuning methods (finetune.methods):")[1].splitlines()
    assert [line.split()[0] for line in listed if line.strip()] == list(methods())
    select = ft["sae_select"]["properties"]["select"]["items"]["enum"]
    runs = run_methods({"methods": list(methods()),
                        "sae_select": {"k": [8, 64], "select": select}})
    assert runs == ["full", "lora", "sae_select-top-k8", "sae_select-random-k8",
                    "sae_select-top-k64", "sae_select-random-k64", "grpo"]
    for run in runs:
        assert str(RunMethod.parse(run)) == run
        assert re.fullmatch(mode_pattern(), f"tuned-{run}-s3")
        assert re.fullmatch(shift_pattern(), f"true-{run}-s3")
        assert Mode.parse(f"tuned-{run}-s3").method == run == Shift.parse(f"true-{run}-s3").method
    for bad in ("sae_select", "sae_select-top-k0", "sae_select-best-k8", "lora-top-k8", "bogus"):
        assert not re.fullmatch(mode_pattern(), f"tuned-{bad}-s3")
        with pytest.raises(ValueError):
            RunMethod.parse(bad)


def test_posthoc_run_methods_parse_and_stay_apart_from_trained_ones():
    """A post-hoc pair's run posthoc_<label> goes through the same modes and shifts as a
    fine-tuning run; the finetune rule's pattern never matches it, the import rule's only it."""
    import re

    import yaml

    from stsflow.config.schema import SCHEMA_PATH
    from stsflow.mode import (RunMethod, mode_pattern, posthoc_method, posthoc_method_pattern,
                              shift_pattern, trained_method_pattern)

    MODE_PATTERN, SHIFT_PATTERN = mode_pattern(), shift_pattern()
    POSTHOC_METHOD_PATTERN, TRAINED_METHOD_PATTERN = (posthoc_method_pattern(),
                                                      trained_method_pattern())

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    label_re = schema["properties"]["posthoc"]["propertyNames"]["pattern"]
    for label in ("grpo", "vendor_sft", "vendor-sft", "R1_distill-7b", "a-s1", "x-mix_sts"):
        assert re.fullmatch(label_re, label)
        run = posthoc_method(label)
        parsed = RunMethod.parse(run)
        assert run == f"posthoc_{label}" and parsed.posthoc and parsed.label == label
        assert str(parsed) == run and parsed.unmixed == parsed
        assert Mode.parse(f"tuned-{run}-s2").method == run == Shift.parse(f"true-{run}-s2").method
        assert Mode.parse(f"tuned-{run}-s2").seed == 2 == Shift.parse(f"true-{run}-s2").seed
        assert re.fullmatch(POSTHOC_METHOD_PATTERN, run)
        assert not re.fullmatch(TRAINED_METHOD_PATTERN, run)
    assert not RunMethod.parse("lora-mix_sts").posthoc
    assert not re.fullmatch(POSTHOC_METHOD_PATTERN, "lora")
    for bad in ("posthoc_", "posthoc_a-", "posthoc__a", "posthoc_a--b", "posthoc_a.b"):
        # a label is what the schema allows, so a run name never reads two ways
        assert not re.fullmatch(label_re, bad.removeprefix("posthoc_"))
        assert not re.fullmatch(MODE_PATTERN, f"tuned-{bad}-s3")
        assert not re.fullmatch(SHIFT_PATTERN, f"true-{bad}-s3")
        with pytest.raises(ValueError):
            RunMethod.parse(bad)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_finetune_job_runs_each_registered_method(job, method):
    """validate_job.finetune (what the rule runs) for every method: a checkpoint that records its
    method and seed, a loss history, and weights that moved."""
    from safetensors.torch import load_file

    from stsflow.finetune.checkpoint import read_checkpoint_meta

    d = job["d"]
    recipe = {"epochs": 1, "lr": 1e-2, "batch_size": 4, "micro_batch_size": 2, "max_length": 128,
              "lora_r": 4, "lora_alpha": 8, "lora_targets": ["q_proj", "v_proj"]}
    out = d / f"ft-{method}"
    without_leaks(validate_job.finetune, d / "model", ModelSettings.with_defaults(**MSPEC),
                  d / "sft.parquet", FinetuneSettings.with_defaults(method, 0, **recipe), out,
                  d / f"ft-{method}.history.parquet", threads=1)
    meta = read_checkpoint_meta(out)
    assert (meta["method"], meta["seed"], meta["n_answer_cut"]) == (method, 0, 0)
    assert pq.read_table(d / f"ft-{method}.history.parquet").num_rows == 3
    base = job["model"].state_dict()
    name = "model.layers.0.self_attn.q_proj.weight"
    if method == "full":
        tuned = load_file(str(out / "model.safetensors"))
        assert not torch.equal(tuned[name], base[name])
    else:  # the adapter alone, with the way back to its base
        assert not (out / "model.safetensors").exists()
        adapter = load_file(str(out / "adapter_model.safetensors"))
        assert adapter and all("lora_" in k for k in adapter)
        assert meta["adapter"] is True and (out / meta["base_dir"]).resolve() == (d / "model")
        assert meta["base"]["kind"] == "local"
    tuned, _, info = load_model(out, "float32", "cpu")
    assert info["method"] == method
    assert not torch.equal(tuned.state_dict()[name], base[name])
    assert not any("lora" in k for k in tuned.state_dict())


def test_grpo_job_trains_an_adapter_on_the_reward_and_records_the_curve(job, monkeypatch):
    """validate_job.finetune for grpo (TRL's GRPOTrainer): a LoRA adapter checkpoint with the
    RL recipe and reward summary in its metadata, a history row per step with the reward, KL and
    completion length, and weights that moved. The tiny model never states a right answer, so
    the reward here scores a completion by its length (the exact-match reward is tested on
    hand-written cases in tests/finetune/test_grpo.py); the pipeline is what is under test."""
    from safetensors.torch import load_file

    from stsflow.finetune import grpo
    from stsflow.finetune.checkpoint import read_checkpoint_meta

    seen = []

    def by_length(completion, reference):
        seen.append(reference)
        return float(len(completion) % 3)

    monkeypatch.setattr(grpo, "exact_match", by_length)
    d = job["d"]
    recipe = {"lora_r": 4, "lora_alpha": 8, "lora_targets": ["q_proj", "v_proj"],
              "grpo": {"steps": 2, "prompts_per_step": 2, "group_size": 3, "max_new_tokens": 8,
                       "temperature": 1.0, "beta": 0.04, "lr": 5e-2, "loss_type": "grpo"}}
    out = d / "ft-grpo"
    validate_job.finetune(d / "model", ModelSettings.with_defaults(**MSPEC), d / "sft.parquet",
                          FinetuneSettings.with_defaults("grpo", 0, **recipe), out,
                          d / "ft-grpo.history.parquet", threads=1)
    meta = read_checkpoint_meta(out)
    assert (meta["method"], meta["adapter_type"], meta["recipe"]["grpo"]["steps"]) == (
        "grpo", "lora", 2)
    assert meta["rl"]["n_prompts"] == 12 and meta["rl"]["n_prompt_retokenized"] == 0
    assert meta["rl"]["steps_with_signal"] >= 1 and meta["rl"]["max_abs_lora_b"] > 0
    history = pq.read_table(d / "ft-grpo.history.parquet").to_pandas()
    assert list(history["step"]) == [1, 2]
    assert {"reward", "reward_std", "kl", "completion_length"} <= set(history.columns)
    assert history["reward"].between(0, 2).all() and history["completion_length"].le(8).all()
    assert meta["rl"]["reward_first"] == history["reward"][0]
    # every reward was computed against an item's reference answer (the answer column)
    answers = {r["answer"] for r in sft_records(12)}
    assert len(seen) == 2 * 2 * 3 and set(seen) <= answers
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert any(v.abs().max() > 0 for k, v in adapter.items() if "lora_B" in k)
    assert not (out / "ref").exists()  # one adapter: the KL reference is the base itself
    tuned, _, info = load_model(out, "float32", "cpu")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert info["method"] == "grpo"
    assert not torch.equal(tuned.state_dict()[name], job["model"].state_dict()[name])


@pytest.fixture(scope="module")
def lora_adapter(job):
    """A LoRA fine-tune through the job path: its checkpoint (the adapter) at ``d/adapter``."""
    d = job["d"]
    recipe = {"epochs": 1, "lr": 5e-2, "batch_size": 4, "micro_batch_size": 2,
              "max_length": 128, "lora_r": 4, "lora_alpha": 8,
              "lora_targets": ["q_proj", "v_proj", "down_proj"]}
    validate_job.finetune(d / "model", ModelSettings.with_defaults(**MSPEC), d / "sft.parquet",
                          FinetuneSettings.with_defaults("lora", 0, **recipe), d / "adapter",
                          d / "adapter.history.parquet", threads=1)
    return d / "adapter"


def test_lora_adapter_and_merged_copy_give_the_same_true_shift(job, lora_adapter):
    """The checkpoint a LoRA run keeps is its adapter; the tuned model's extraction (the true
    shift) through it equals the extraction through a full checkpoint of the merged weights
    (the merge itself is checked against the trained model in test_finetune.py), and the
    adapter is a small fraction of the copy's size."""
    from stsflow.finetune.checkpoint import read_checkpoint_meta, save_checkpoint

    d = job["d"]
    merged, tok, _ = load_model(lora_adapter, "float32", "cpu")
    meta = {k: v for k, v in read_checkpoint_meta(lora_adapter).items()
            if k not in ("adapter", "base_dir")}
    save_checkpoint(merged, tok, d / "merged", meta)
    run_job(job, "sft", "plain", "ad_plain")
    shards = {}
    for name in ("adapter", "merged"):
        run_job(job, "sft", "tuned-lora-s0", f"ad_{name}", model=name, reference="ad_plain")
        shards[name] = pq.read_table(d / f"ad_{name}.parquet")
    assert shards["adapter"].num_rows > 0
    assert shards["adapter"].column_names == shards["merged"].column_names
    for col in shards["adapter"].column_names:
        assert shards["adapter"][col].to_pylist() == shards["merged"][col].to_pylist(), col
    stats = {n: Stats.read(d / f"ad_{n}.stats.parquet") for n in ("adapter", "merged", "plain")}

    np.testing.assert_array_equal(stats["adapter"].diff_sum, stats["merged"].diff_sum)
    assert np.abs(stats["adapter"].diff_sum).max() > 0  # the model moved: a true shift
    assert stats["plain"].diff_sum is None

    def size(p):
        return sum(f.stat().st_size for f in p.rglob("*.safetensors"))

    assert size(d / "adapter") < 0.1 * size(d / "merged")


def test_lora_adapter_refuses_a_missing_or_changed_base(job, lora_adapter, tmp_path):
    """A LoRA checkpoint names its base model; loading it without that base, or with another
    model in its place, fails with the path and what to do."""
    import shutil

    from stsflow.finetune.checkpoint import read_checkpoint_meta

    d, adapter = job["d"], lora_adapter
    layout = tmp_path / "results"
    shutil.copytree(adapter, layout / "finetune" / "ft-lora")
    meta = read_checkpoint_meta(adapter)
    moved = layout / "finetune" / "ft-lora"
    base = (moved / meta["base_dir"]).resolve()
    with pytest.raises(FileNotFoundError, match="rerun its prepare_model job"):
        load_model(moved, "float32", "cpu")
    shutil.copytree(d / "model", base)
    load_model(moved, "float32", "cpu")  # the base in its place: loads
    manifest = json.loads((base / "stsflow_model.json").read_text())
    # a local base is identified by its config.json and weight files, not only its kind
    changed = tmp_path / "changed_model"
    shutil.copytree(manifest["path"], changed)
    cfg = json.loads((changed / "config.json").read_text())
    (changed / "config.json").write_text(json.dumps({**cfg, "rms_norm_eps": 1e-3}))
    (base / "stsflow_model.json").write_text(json.dumps({**manifest, "path": str(changed)}))
    with pytest.raises(ValueError, match="config.json or weight files"):
        load_model(moved, "float32", "cpu")
    (base / "stsflow_model.json").write_text(json.dumps({**manifest, "kind": "hf",
                                                         "id": "other/model"}))
    with pytest.raises(ValueError, match="trained on another base model"):
        load_model(moved, "float32", "cpu")


def test_finetune_job_draws_max_items_with_the_sample_seed(job):
    """finetune.max_items through the job: a seeded sample of the SFT set (sts.sample_seed, passed
    as the recipe's sample_seed), recorded in the checkpoint, and fewer optimizer steps."""
    from stsflow.finetune.checkpoint import read_checkpoint_meta

    d = job["d"]
    recipe = {"epochs": 1, "lr": 1e-2, "batch_size": 4, "micro_batch_size": 2, "max_length": 128,
              "lora_r": 4, "lora_alpha": 8, "lora_targets": ["q_proj", "v_proj"], "max_items": 8}
    rows = {}
    for seed in (3, 4):
        out = d / f"ft-sample-{seed}"
        validate_job.finetune(d / "model", ModelSettings.with_defaults(**MSPEC),
                              d / "sft.parquet",
                              FinetuneSettings.with_defaults("lora", 0, sample_seed=seed,
                                                             **recipe),
                              out, d / f"ft-sample-{seed}.history.parquet", threads=1)
        meta = read_checkpoint_meta(out)
        sample = meta["sample"]
        assert (sample["seed"], sample["n_source"], sample["n_kept"]) == (seed, 12, 8)
        assert sample["rows"] == sorted(set(sample["rows"])) and len(sample["rows"]) == 8
        assert all(0 <= r < 12 for r in sample["rows"])
        assert meta["n_records"] == 8 and meta["recipe"]["sample_seed"] == seed
        assert pq.read_table(d / f"ft-sample-{seed}.history.parquet").num_rows == 2  # 8 / 4
        rows[seed] = sample["rows"]
    assert rows[3] != rows[4]


def test_materialized_sft_set_records_the_sample(tmp_path):
    """materialize_sft through the job with an SFT set's settings (source, max_items, seed)."""
    from conftest import write_jsonl

    write_jsonl(tmp_path / "s.jsonl", sft_records(20))
    spec = {"source": {"local": {"path": str(tmp_path / "s.jsonl")}}, "schema": "limo",
            "fields": {}, "max_items": 6, "sample_seed": 2}
    prepare_job.materialize_sft(CorpusSettings.from_config(spec, "sft.arith"),
                                tmp_path / "s.parquet")
    meta = read_metadata(tmp_path / "s.parquet")
    assert meta["sample"]["seed"] == 2 and len(meta["sample"]["rows"]) == 6
    assert len(corpora.read_records(tmp_path / "s.parquet")) == 6


# ------------------------------------------------------------------------------- SAE sweeps


def test_sweep_sae_on_kept_residuals_against_dense_computation(job, tmp_path):
    """A second SAE of the layer (other width and k) encodes the residuals the layer's
    extraction kept, without the model: its shift, STS and random-encoder statistics equal the
    definitions computed from a direct dense forward pass with that SAE, and its shard records
    the kept run's provenance with its own SAE."""
    from conftest import make_sae

    from stsflow.features.panel import read_space_stats
    from stsflow.features.panel_gather import RandomEncoder

    model, seg, d = job["model"], job["seg"], job["d"]
    sae2 = make_sae(width=48, k=3, seed=5)
    sae2.save_model(str(d / "sae2_files"))
    (d / "sae2").mkdir(exist_ok=True)
    (d / "sae2" / "stsflow_sae.json").write_text(json.dumps(
        {"kind": "local", "path": str(d / "sae2_files"), "width": 48}))
    for kind, mode, name, ref in (("sft", "plain", "sw_sft_plain", None),
                                  ("sft", "icl-s0", "sw_sft_icl", "sw_sft_plain"),
                                  ("domain", "plain", "sw_law_plain", None),
                                  ("domain", "icl", "sw_law_icl", "sw_law_plain")):
        run_job(job, kind, mode, name, reference=ref, keep=True)
        run_sweep(job, kind, mode, name, d / "sae2", reference=ref)
    meta = read_metadata(d / "sw_sft_icl.sweep.parquet")
    kept = read_metadata(d / "sw_sft_icl.parquet")
    assert meta["width"] == 48 and meta["residuals"] == "kept" and meta["sae"]["width"] == 48
    for key in ("model", "demonstrations", "selection", "prefix_tokens", "n_tokens", "mode"):
        assert meta[key] == kept[key], key
    outs = {sp: tmp_path / f"shift.{sp}.parquet" for sp in scores.SPACES}
    reduce_job.shift(d / "sw_sft_icl.sweep.stats.parquet", d / "sw_sft_icl.sweep.panel", outs, {})

    head, sft = seg.head(), sft_records(12)
    demo_idx = demos.sft_demo_indices(12, 2, 0)
    ctx = seg.context([sft[i] for i in demo_idx], "sft")
    diffs, rdiffs = [], []
    enc = RandomEncoder(32, 48, 3, seed=0, b_dec=sae2.b_dec)  # the sweep SAE's width and k
    for i, rec in enumerate(sft):
        if i in demo_idx:
            continue
        ids, mask = _user_text_mask(seg, rec, "sft")
        diffs.append((dense(model, sae2, ctx, ids) - dense(model, sae2, head, ids))[mask])
        z_icl = torch.from_numpy(resid(model, ctx, ids)[mask]).float()
        z_plain = torch.from_numpy(resid(model, head, ids)[mask]).float()
        rdiffs.append((enc.encode(z_icl) - enc.encode(z_plain)).double().numpy())
    direct = (np.concatenate(diffs) ** 2).mean(0)
    shift = pq.read_table(outs["sae"])
    np.testing.assert_allclose(shift["shift"].to_numpy(), direct, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(pq.read_table(outs["randenc"])["shift"].to_numpy(),
                               (np.concatenate(rdiffs) ** 2).mean(0), rtol=1e-3, atol=1e-6)

    law_ctx = seg.context(domain_records("law", 3, offset=50)[:2], "domain")
    plain, icl = [], []
    for rec in domain_records("law", 7):
        ids, mask = _user_text_mask(seg, rec, "domain")
        plain.append(dense(model, sae2, head, ids)[mask])
        icl.append(dense(model, sae2, law_ctx, ids)[mask])
    plain, icl = np.concatenate(plain), np.concatenate(icl)
    dims = np.argsort(-direct, kind="stable")[:10]
    got = scores.sts_scores(scores.top_dims(shift, 10),
                            Stats.read(d / "sw_law_plain.sweep.stats.parquet"),
                            Stats.read(d / "sw_law_icl.sweep.stats.parquet"))
    assert got["sts_act"] == pytest.approx(plain[:, dims].sum(1).mean(), rel=1e-4)
    assert got["sts_icl"] == pytest.approx(((icl - plain)[:, dims] ** 2).sum(1).mean(), rel=1e-4)
    # the residual statistics do not depend on the SAE: the sweep's panel repeats the layer's
    a, b = (read_space_stats(d / f"sw_law_icl{x}.panel", "resid") for x in ("", ".sweep"))
    np.testing.assert_allclose(a.diff_sumsq, b.diff_sumsq, rtol=1e-6)
    assert a.n_tokens == b.n_tokens == plain.shape[0]


def test_sweep_without_kept_residuals_names_the_fix(job, tmp_path):
    (tmp_path / "empty.resid").mkdir()
    with pytest.raises(FileNotFoundError, match="kept no residuals.*snakemake -R extract"):
        extract_job.encode_sweep(tmp_path / "empty.resid", job["d"] / "sae", "plain",
                                 ExtractSettings.with_defaults("domain", **STS),
                                 tmp_path / "o.parquet", tmp_path / "o.stats.parquet",
                                 tmp_path / "o.panel", device="cpu")


# ------------------------------------------------------------------------------- post-training


def test_before_after_similarity_against_dense_computation(job, tmp_path):
    """The evaluation jobs of the base and of a perturbed tuned model record the domain's mean
    residual per layer; before_after is the cosine of the two at the row's layer, equal to the
    definition computed from direct dense forward passes (every test item as a plain query,
    content tokens, token mean)."""
    from stsflow.config.settings import EvalSettings
    from stsflow.jobs import validate

    model, seg, d = job["model"], job["seg"], job["d"]
    tuned = perturbed_checkpoint(job, 0.2, tmp_path / "tuned", {"method": "full", "seed": 2})
    settings = EvalSettings.with_defaults(metrics=["nll"], batch_size=3)
    reps = {}
    for name, path in (("base", d / "model"), ("tuned", tmp_path / "tuned")):
        reps[name] = tmp_path / f"{name}.reps.parquet"
        validate.evaluate(path, ModelSettings.with_defaults(**MSPEC), d / "law.test.parquet",
                          d / "law.demos.parquet", settings, {"model": name},
                          tmp_path / f"{name}.parquet", threads=1, reps_out=reps[name])
    assert pq.read_table(reps["base"]).num_rows == model.config.num_hidden_layers
    head = seg.head()

    def mean(m, layer):
        rows = []
        for rec in domain_records("law", 7):
            ids, counted = seg.query_parts(rec, "domain")
            hs = hidden_states(m, input_ids=torch.tensor([head + ids]))
            rows.append(hs[layer + 1][0, len(head):].double().numpy()[counted])
        return np.concatenate(rows).mean(0)

    pred = scores.PREDICTORS["before_after"]
    assert pred.post_training and "before_after" not in scores.pretraining_predictors()
    for layer in (0, LAYER):
        a, b = mean(model, layer), mean(tuned, layer)
        want = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        x = scores.ScoreInputs(n_top=5, shifts={}, plain={}, icl={}, layer=layer,
                               reps_base=reps["base"], reps_tuned=reps["tuned"])
        assert pred.fn(x) == pytest.approx(want, rel=1e-6)
        assert pred.fn(x) < 1 - 1e-6  # the perturbation moved the representation
    same = scores.ScoreInputs(n_top=5, shifts={}, plain={}, icl={}, layer=LAYER,
                              reps_base=reps["base"], reps_tuned=reps["base"])
    assert pred.fn(same) == pytest.approx(1.0)
    # predicted rows have no tuned model: the predictor is undefined there
    assert np.isnan(pred.fn(scores.ScoreInputs(n_top=5, shifts={}, plain={}, icl={},
                                               layer=LAYER)))


def test_sweep_on_float16_residuals_stays_within_rounding(job):
    """With the default feat_dtype (float16) a sweep SAE encodes the residual rounded to float16
    while the layer's own SAE saw it unrounded: the layer's own SAE run as a sweep on its own
    kept residuals gives the same statistics to float16 precision."""
    d = job["d"]
    sts = dict(STS, feat_dtype="float16")
    for kind, mode, name, ref in (("domain", "plain", "h_plain", None),
                                  ("domain", "icl", "h_icl", "h_plain")):
        run_job(job, kind, mode, name, reference=ref, sts=sts, keep=True)
        run_sweep(job, kind, mode, name, d / "sae", reference=ref, sts=sts)
    for name in ("h_plain", "h_icl"):
        own, sweep = (Stats.read(d / f"{name}{x}.stats.parquet") for x in ("", ".sweep"))
        assert own.n_tokens == sweep.n_tokens
        scale = np.abs(own.sum).max()
        np.testing.assert_allclose(sweep.sum, own.sum, rtol=1e-3, atol=1e-3 * scale)
        assert abs(sweep.nnz.sum() - own.nnz.sum()) <= 0.01 * own.nnz.sum()
    own, sweep = (Stats.read(d / f"h_icl{x}.stats.parquet") for x in ("", ".sweep"))
    np.testing.assert_allclose(sweep.diff_sumsq, own.diff_sumsq, rtol=2e-2,
                               atol=2e-2 * own.diff_sumsq.max())


def test_layer_means_are_the_block_outputs_extraction_reads(job):
    """Every layer's mean, the last one included (whose hidden_states entry is after the final
    norm in recent transformers), is the output of that block as LayerTap captures it; with
    max_length only the queries' first tokens are read, as extraction cuts them."""
    from stsflow.features.reps import layer_sums

    model, seg = job["model"], job["seg"]
    records = domain_records("law", 4)
    sums, n = layer_sums(model, seg, records, batch_size=3)
    want, m = direct_layer_sums(model, seg, records)
    assert n == m
    np.testing.assert_allclose(sums / n, want / m, rtol=1e-5, atol=1e-6)
    cut_sums, n = layer_sums(model, seg, records, batch_size=3, max_length=5)
    want, m = direct_layer_sums(model, seg, records, cut=5)
    assert n == m < sum(int(np.sum(seg.query_parts(r, "domain")[1])) for r in records)
    np.testing.assert_allclose(cut_sums, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metrics,k", [(["nll"], 0), (["option_loglik"], 0),
                                       (["option_loglik"], 2), (["generate"], 0)])
def test_the_evaluation_job_records_the_layer_means_whatever_its_metrics(job, tmp_path, metrics,
                                                                          k):
    """Through the job function the rule calls: whether the layer means ride on the NLL or
    0-shot option pass or need a pass of their own (k-shot options, generation), the file holds
    every block's output summed over the test queries' content tokens (LayerTap, directly)."""
    from stsflow.config.settings import EvalSettings
    from stsflow.io.files import read_metadata
    from stsflow.jobs import validate

    model, seg, d = job["model"], job["seg"], job["d"]
    settings = EvalSettings.with_defaults(metrics=metrics, loglik_k_shot=k, k_shot=1,
                                          max_new_tokens=4, batch_size=3)
    reps = tmp_path / "reps.parquet"
    n_hooks = without_leaks(validate.evaluate, d / "model", ModelSettings.with_defaults(**MSPEC),
                            d / "law.test.parquet", d / "law.demos.parquet", settings,
                            {"model": "m"}, tmp_path / "s.parquet", threads=1, reps_out=reps)
    assert n_hooks >= model.config.num_hidden_layers  # one per block for the layer means
    scored = pq.read_table(tmp_path / "s.parquet").to_pylist()
    assert {r["metric"] for r in scored} == set(metrics)
    sums = np.array(pq.read_table(reps)["sum"].to_pylist())
    n = read_metadata(reps)["n_tokens"]
    want, m = direct_layer_sums(model, seg, domain_records("law", 7))
    assert n == m
    np.testing.assert_allclose(sums, want, rtol=1e-5, atol=1e-5)


def test_kept_residuals_refuse_a_float16_overflow(tmp_path):
    from stsflow.features.residuals import ResidualWriter

    writer = ResidualWriter(tmp_path, 4, np.float16)
    batch = [(0, [1, 2], [True, True])]
    ids, mask = torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.long)
    writer.add(batch, ids, mask, torch.full((1, 2, 4), 6.0e4))  # fits float16
    with pytest.raises(ValueError, match="beyond float16's range.*feat_dtype: float32"):
        writer.add(batch, ids, mask, torch.full((1, 2, 4), 7.0e4))
    ResidualWriter(tmp_path, 4, np.float32).add(batch, ids, mask, torch.full((1, 2, 4), 7.0e4))
