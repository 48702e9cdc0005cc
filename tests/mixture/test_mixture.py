"""The data mixture: the budget split by each strategy (hand computations), pool splits that never
hold a test item, the base model's replay answers against a direct greedy decode, and the
records a mixture run trains on."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from conftest import domain_records, sft_records, without_leaks

from stsflow.config.settings import CorpusSettings, FinetuneSettings, ModelSettings
from stsflow.data import builtin, corpora
from stsflow.jobs import prepare as prepare_job
from stsflow.mixture.records import mixture_records
from stsflow.jobs import validate as validate_job
from stsflow.mixture import replay
from stsflow.mixture.allocate import allocate, weights
from stsflow.mixture.records import mixture_records
from stsflow.text.segments import Segmenter


def test_strategies_split_the_budget_by_their_weights():
    doms = ["a", "b", "c", "d"]
    room = {d: 100 for d in doms}
    # sts: in proportion to the scores, a negative score counts 0
    w = weights("sts", doms, scores={"a": 3.0, "b": 1.0, "c": -2.0, "d": 0.0})
    assert allocate(w, 80, room) == ({"a": 60, "b": 20, "c": 0, "d": 0}, 0)
    # uniform: equal shares, the remainder to the first names
    assert allocate(weights("uniform", doms), 10, room) == ({"a": 3, "b": 3, "c": 2, "d": 2}, 0)
    # oracle with top_k: only the two largest |Δ| share the budget
    w = weights("oracle", doms, abs_delta={"a": 0.01, "b": 0.05, "c": 0.03, "d": 0.02}, top_k=2)
    assert allocate(w, 16, room) == ({"a": 0, "b": 10, "c": 6, "d": 0}, 0)
    # every score at or below 0: no guidance, equal shares
    assert weights("sts", doms, scores=dict.fromkeys(doms, -1.0)) == dict.fromkeys(doms, 1.0)


def test_a_capped_domain_passes_its_share_on_and_the_rest_is_counted_short():
    w = {"a": 1.0, "b": 1.0, "c": 2.0}
    counts, short = allocate(w, 40, {"a": 100, "b": 3, "c": 100})
    assert counts["b"] == 3 and sum(counts.values()) == 40 and short == 0
    # after b's cap, a and c share the rest 1:2
    assert counts == {"a": 12, "b": 3, "c": 25}
    counts, short = allocate(w, 40, {"a": 5, "b": 3, "c": 10})
    assert counts == {"a": 5, "b": 3, "c": 10} and short == 22


def test_builtin_pool_split_leaves_the_test_split_as_it_was_and_shares_no_question():
    for name in builtin.NUMERIC_DOMAINS:
        test, demos = builtin.domain_items(name)
        pool = builtin.pool_items(name)
        assert len(pool) == 60
        replay.check_disjoint(pool, test + demos, f"domains.{name}.pool")
        assert builtin.domain_items(name)[0] == test  # unchanged by drawing the pool
    with pytest.raises(ValueError, match="no pool split"):
        builtin.pool_items(builtin.KNOWLEDGE_DOMAINS[0])


def test_a_pool_holding_a_test_item_is_refused_by_id_or_text(tmp_path):
    """Against the whole test source (an item a max_items sample left out counts) and the
    demonstrations, by question_id or by normalised question text."""
    test = domain_records("law", 5)
    demos = domain_records("law", 2, offset=50)
    for name, rows in (("test", test), ("demos", demos)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    against = {k: {"local": {"path": str(tmp_path / f"{k}.jsonl")}} for k in ("test", "demos")}
    pool = domain_records("law", 4, offset=20)
    same_text = dict(pool[0], question_id=999, question="  LAW question 3? ")
    for bad in ([test[1]] + pool, [same_text] + pool[1:], [demos[0]] + pool):
        path = tmp_path / "pool.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in bad))
        spec = CorpusSettings.from_config({"source": {"local": {"path": str(path)}},
                                           "schema": "mmlu_pro", "fields": {},
                                           "max_items": None, "sample_seed": 0}, "x")
        with pytest.raises(ValueError, match=r"domains\.law\.pool: 1 of [45] pool items are in "
                                             r"the test split"):
            prepare_job.materialize_pool(spec, against, tmp_path / "pool.parquet",
                                         "domains.law.pool")
        assert not (tmp_path / "pool.parquet").exists()
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pool))
    prepare_job.materialize_pool(spec, against, tmp_path / "pool.parquet", "domains.law.pool")
    assert len(corpora.read_records(tmp_path / "pool.parquet")) == 4


def test_replay_answers_are_the_greedy_continuations_of_the_query(tiny):
    """Batched generation with left padding against one decode per item, token by token with
    argmax over the full forward (no cache): the same text, and the record in the SFT schema
    whose prompt is the domain query."""
    model, tok = tiny
    seg = Segmenter.for_tokenizer(tok, True)
    items = domain_records("law", 3, offset=40)
    items[1] = dict(items[1], question="a much longer law question so that padding is needed?")
    rows = replay.generate(model, tok, items, seg, max_new_tokens=6, batch_size=3)
    eos = set(replay_eos(model, tok))
    for item, row in zip(items, rows):
        ids = seg.head() + seg.query(item, "domain")
        new = []
        with torch.no_grad():
            for _ in range(6):
                nxt = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
                if nxt in eos:
                    break
                new.append(nxt)
        assert row["solution"] == tok.decode(new, skip_special_tokens=True).strip()
        assert row["question_id"] == item["question_id"] and row["finish"] in ("eos", "length")
        # the SFT-schema record's query is the domain query: the same prompt tokens
        assert seg.query({"question": row["question"]}, "sft") == seg.query(item, "domain")


def test_the_replay_job_answers_greedily_and_leaves_no_hook(tiny, tiny_model_dir, tmp_path):
    """The replay job the rule calls, on the prepared model: each pool item's answer is the
    direct greedy decode (argmax over a full forward, no cache), the metadata counts the cut
    answers, and the job leaves no forward hook on any module."""
    model, tok = tiny
    prepare_job.prepare_model(ModelSettings.with_defaults(
        source={"local": {"path": str(tiny_model_dir)}}), tmp_path / "model")
    items = domain_records("law", 3, offset=60)
    corpora.write_records(items, tmp_path / "pool.parquet", {"source": "test pool"})
    mspec = ModelSettings.with_defaults(source={"local": {"path": "unused"}}, dtype="float32",
                                        device="cpu", chat_template=True, batch_size=2,
                                        max_length=512)
    without_leaks(validate_job.replay, tmp_path / "model", mspec, tmp_path / "pool.parquet",
                  tmp_path / "replay.parquet", max_new_tokens=5, batch_size=2, threads=1)
    rows = corpora.read_records(tmp_path / "replay.parquet")
    seg, eos = Segmenter.for_tokenizer(tok, True), set(replay_eos(model, tok))
    n_cut = 0
    for item, row in zip(items, rows):
        ids, new = seg.head() + seg.query(item, "domain"), []
        with torch.no_grad():
            for _ in range(5):
                nxt = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
                if nxt in eos:
                    break
                new.append(nxt)
        n_cut += len(new) == 5
        assert row["solution"] == tok.decode(new, skip_special_tokens=True).strip()
    from stsflow.io.files import read_metadata

    meta = read_metadata(tmp_path / "replay.parquet")
    assert meta["n_records"] == 3 and meta["n_cut"] == n_cut and meta["pool"] == "test pool"


def replay_eos(model, tok):
    from stsflow.evaluate.engines import eos_ids

    return eos_ids(model, tok)


@pytest.fixture
def mixture_inputs(tmp_path):
    """Replay files of two domains, their sts parts and evaluation files, as a mixture run's
    inputs (stsflow.workflow.bundles.FinetuneFiles)."""
    from stsflow.workflow.bundles import FinetuneFiles

    files = FinetuneFiles()
    for d, n in (("law", 10), ("history", 4)):
        rows = [{"id": f"replay-{i}", "question": f"{d} q{i}", "solution": f"a{i}",
                 "question_id": i, "finish": "eos"} for i in range(n)]
        if d == "law":  # an answer cut at max_new_tokens: never trained on
            rows.append({"id": "replay-cut", "question": "law cut", "solution": "half",
                         "question_id": 99, "finish": "length"})
        corpora.write_records(rows, tmp_path / f"{d}.replay.parquet")
        files.replay[d] = str(tmp_path / f"{d}.replay.parquet")
        pl.DataFrame({"sts_icl": [{"law": 3.0, "history": 1.0}[d]]}).write_parquet(
            tmp_path / f"{d}.sts.parquet")
        files.scores[d] = str(tmp_path / f"{d}.sts.parquet")
        for run, mean in (("base", 0.5), ("plain", {"law": 0.45, "history": 0.2}[d])):
            pl.DataFrame({"metric": ["acc"] * 2, "value": [mean - 0.1, mean + 0.1],
                          "question_id": [1, 2]}).write_parquet(tmp_path / f"{d}.{run}.parquet")
            getattr(files, f"eval_{run}")[d] = str(tmp_path / f"{d}.{run}.parquet")
    return files


@pytest.mark.parametrize("strategy, counts", [("sts", {"law": 6, "history": 2}),
                                              ("uniform", {"law": 4, "history": 4}),
                                              ("oracle", {"law": 1, "history": 4})])
def test_mixture_records_follow_the_strategy(mixture_inputs, strategy, counts):
    """sts: 3:1 of 8; uniform: 4 and 4; oracle (budget 5): |Δ| of the plain run 0.05 : 0.3,
    shares 0.71 : 4.29, the remaining item to the larger remainder (law)."""
    mix = {"budget": 8 if strategy != "oracle" else 5, "domains": ["law", "history"],
           "top_k": None, "predictor": "sts_icl", "layer": 1, "sae": "main", "n_top": 5,
           "metric": "acc"}
    recipe = FinetuneSettings.with_defaults(f"lora-mix_{strategy}", 3, mixture=mix)
    chosen, info = mixture_records(recipe, mixture_inputs)
    got = {d: sum(r["domain"] == d for r in chosen) for d in ("law", "history")}
    expected = counts if strategy != "oracle" else {"law": 1, "history": 4}
    assert got == expected == info["counts"]
    assert info["available"] == {"law": 10, "history": 4}
    assert "replay-cut" not in {r["id"] for r in chosen}
    # the items of a domain: the first of its seeded permutation, the same on a rerun
    again, _ = mixture_records(recipe, mixture_inputs)
    assert [r["id"] for r in chosen] == [r["id"] for r in again]
    import zlib
    law = [r["id"] for r in chosen if r["domain"] == "law"]
    order = np.random.default_rng([3, zlib.crc32(b"law")]).permutation(10)
    assert law == [f"replay-{i}" for i in order[:got["law"]]]


def test_mixture_settings_only_for_mixture_runs():
    with pytest.raises(ValueError, match="mixture"):
        FinetuneSettings.with_defaults("lora-mix_sts", 0)
    with pytest.raises(ValueError, match="mixture"):
        FinetuneSettings.with_defaults("lora", 0, mixture={"budget": 1})


def test_cut_answers_only_with_keep_cut(mixture_inputs):
    mix = {"budget": 14, "domains": ["law", "history"], "keep_cut": True}
    recipe = FinetuneSettings.with_defaults("lora-mix_uniform", 0, mixture=mix)
    chosen, info = mixture_records(recipe, mixture_inputs)
    assert info["available"] == {"law": 11, "history": 4} and info["counts"]["law"] == 10
    without = FinetuneSettings.with_defaults("lora-mix_uniform", 0,
                                             mixture=dict(mix, keep_cut=False))
    _, info = mixture_records(without, mixture_inputs)
    assert info["available"] == {"law": 10, "history": 4} and info["counts"]["law"] == 10


def test_the_finetune_job_trains_on_the_sft_set_plus_the_drawn_replay(mixture_inputs,
                                                                       tiny_model_dir, tmp_path):
    """A data-mixture run through the job the rule calls: the SFT set and the replay records
    the strategy draws are what it trains on, and the checkpoint records the draw."""
    from conftest import sft_records

    from stsflow.finetune.checkpoint import read_checkpoint_meta
    from stsflow.jobs import validate as validate_job

    prepare_job.prepare_model(ModelSettings.with_defaults(
        source={"local": {"path": str(tiny_model_dir)}}), tmp_path / "model")
    corpora.write_records(sft_records(6), tmp_path / "sft.parquet")
    mix = {"budget": 8, "domains": ["law", "history"], "top_k": None, "predictor": "sts_icl",
           "layer": 1, "sae": "main", "n_top": 5, "metric": "acc"}
    recipe = FinetuneSettings.with_defaults(
        "lora-mix_sts", 3, mixture=mix, epochs=1, lr=1e-2, batch_size=4, micro_batch_size=2,
        max_length=128, warmup_ratio=0.0)
    model = ModelSettings.with_defaults(source={"local": {"path": "unused"}}, dtype="float32",
                                        device="cpu", chat_template=True, batch_size=3,
                                        max_length=512)
    without_leaks(validate_job.finetune, tmp_path / "model", model, tmp_path / "sft.parquet",
                  recipe, tmp_path / "run", tmp_path / "run.history.parquet", threads=1,
                  inputs=mixture_inputs.named())
    meta = read_checkpoint_meta(tmp_path / "run")
    _, info = mixture_records(recipe, mixture_inputs)
    assert meta["mixture"]["counts"] == info["counts"] == {"law": 6, "history": 2}
    assert meta["n_records"] == 6 + 8


def test_a_contrast_rule_run_weighs_the_scores_through_its_rule(mixture_inputs):
    """sts_rank: ranks 2 : 1 of 8 -> 5.33, 2.67 -> 5, 3; sts_softmax at T = 1: z = +1, -1, shares
    e^1 : e^-1 (scipy) of 8. The rule is recorded; softmax needs its temperature."""
    from scipy import special

    mix = {"budget": 8, "domains": ["law", "history"], "top_k": None, "predictor": "sts_icl",
           "layer": 1, "sae": "main", "n_top": 5}
    rank = FinetuneSettings.with_defaults("lora-mix_sts_rank", 3, mixture=mix)
    chosen, info = mixture_records(rank, mixture_inputs)
    assert info["counts"] == {"law": 5, "history": 3} and info["allocation"] == "rank"
    assert info["strategy"] == "sts" and info["values"] == {"law": 3.0, "history": 1.0}
    assert sum(r["domain"] == "law" for r in chosen) == 5
    soft = FinetuneSettings.with_defaults("lora-mix_sts_softmax", 3, mixture=mix)
    with pytest.raises(ValueError, match="mixture.temperature"):
        mixture_records(soft, mixture_inputs)
    soft = FinetuneSettings.with_defaults("lora-mix_sts_softmax", 3,
                                          mixture=dict(mix, temperature=1.0))
    _, info = mixture_records(soft, mixture_inputs)
    law, history = 8 * special.softmax([1.0, -1.0])  # 7.05, 0.95
    assert info["counts"] == {"law": int(law), "history": 8 - int(law)} == {"law": 7,
                                                                            "history": 1}
    assert (info["allocation"], info["temperature"]) == ("softmax", 1.0)
    # the paper's rule records its name too
    sts = FinetuneSettings.with_defaults("lora-mix_sts", 3, mixture=mix)
    assert mixture_records(sts, mixture_inputs)[1]["allocation"] == "proportional"


def test_runs_with_the_same_counts_train_on_the_same_records(mixture_inputs, tmp_path):
    """Equal scores: sts splits 4 / 4 as uniform does, so both runs draw the same replay records
    in the same order (the training data is the same: one run), and identical_runs names
    uniform as the one to train; rank, with other counts, is its own run."""
    from stsflow.mixture.identical import identical_runs

    import dataclasses

    equal = dataclasses.replace(mixture_inputs, scores={})
    for d in ("law", "history"):
        pl.DataFrame({"sts_icl": [2.5]}).write_parquet(tmp_path / f"{d}.equal.parquet")
        equal.scores[d] = str(tmp_path / f"{d}.equal.parquet")
    mix = {"budget": 8, "domains": ["law", "history"], "top_k": None, "predictor": "sts_icl",
           "layer": 1, "sae": "main", "n_top": 5}
    got = {}
    for name, inputs in (("sts", equal), ("uniform", mixture_inputs), ("sts_rank", mixture_inputs)):
        recipe = FinetuneSettings.with_defaults(f"lora-mix_{name}", 3, mixture=mix)
        got[f"lora-mix_{name}"] = mixture_records(recipe, inputs)
    records = {run: [(r["domain"], r["id"]) for r in chosen] for run, (chosen, _) in got.items()}
    assert records["lora-mix_sts"] == records["lora-mix_uniform"]
    assert records["lora-mix_sts_rank"] != records["lora-mix_uniform"]
    groups = identical_runs({run: info["counts"] for run, (_, info) in got.items()})
    assert [(g.trains, g.runs) for g in groups] == [
        ("lora-mix_uniform", ("lora-mix_uniform", "lora-mix_sts")),
        ("lora-mix_sts_rank", ("lora-mix_sts_rank",))]


def test_the_allocation_job_writes_the_split_the_run_trains_on(mixture_inputs, tmp_path):
    """The allocation job (rule allocation, before any fine-tuning: the workflow learns from it
    which runs share their data) writes the counts the run's fine-tuning draws, in the config's
    domain order; a run without a mixture, and a file that is not an allocation, are refused."""
    from stsflow.io.files import DamagedFileError
    from stsflow.jobs import mixture as mixture_job
    from stsflow.mixture.allocation_file import read_allocation

    mix = {"budget": 8, "domains": ["law", "history"], "top_k": None, "predictor": "sts_icl",
           "layer": 1, "sae": "main", "n_top": 5, "metric": "acc"}
    for name in ("sts", "sts_rank", "uniform", "oracle"):
        run = f"lora-mix_{name}"
        mixture_job.allocation(mix, run, 3, mixture_inputs, tmp_path / f"{name}.json")
        written = read_allocation(tmp_path / f"{name}.json")
        chosen, info = mixture_records(FinetuneSettings.with_defaults(run, 3, mixture=mix),
                                       mixture_inputs)
        drawn = {d: sum(r["domain"] == d for r in chosen) for d in ("law", "history")}
        assert written["counts"] == info["counts"] == drawn
        assert list(written["counts"]) == list(written["weights"]) == ["law", "history"]
        assert (written["method"], written["seed"]) == (run, 3)
        assert {k: written[k] for k in info} == info
    with pytest.raises(ValueError, match="not a data-mixture run"):
        mixture_job.allocation(mix, "lora", 3, mixture_inputs, tmp_path / "plain.json")
    (tmp_path / "other.json").write_text('{"counts": {}}')
    with pytest.raises(ValueError, match="other.json: not a data-mixture allocation"):
        read_allocation(tmp_path / "other.json")
    (tmp_path / "cut.json").write_text('{"counts": ')
    with pytest.raises(DamagedFileError, match="cut.json"):
        read_allocation(tmp_path / "cut.json")
