"""`stsflow bench --padding`: the padding efficiency against a direct count of padded tokens,
the MMLU-Pro-shaped queries, and the benchmark's layouts on the tiny model (every query in
exactly one batch, longest-first never worse than corpus order)."""

from __future__ import annotations

import json

import pytest

from stsflow import benchmark as bm


def test_padding_efficiency_counts_the_padded_tokens():
    lengths = [5, 1, 3, 3]
    # batches [0, 1] and [2, 3]: 2 × 5 + 2 × 3 padded tokens, 12 real ones
    assert bm.padding_efficiency(lengths, [[0, 1], [2, 3]]) == pytest.approx(12 / 16)
    assert bm.padding_efficiency(lengths, [[0], [1], [2, 3]]) == 1.0


def test_mmlu_pro_shaped_items_have_ten_options_and_a_wide_spread():
    items = bm.mmlu_pro_shaped(200)
    assert all(len(r["options"]) == 10 for r in items)
    words = [len(r["question"].split()) for r in items]
    assert min(words) <= 5 and max(words) >= 120  # log-uniform from 2 to 220 words
    assert bm.mmlu_pro_shaped(5) == bm.mmlu_pro_shaped(5)  # seeded


def test_padding_benchmark_on_the_tiny_model(tiny_model_dir, tmp_path, capsys):
    prepared = tmp_path / "model"
    prepared.mkdir()
    (prepared / "stsflow_model.json").write_text(json.dumps(
        {"kind": "local", "path": str(tiny_model_dir), "n_layers": 3, "hidden_size": 32}))
    res = bm.padding(str(prepared), layer=1, n_queries=12, batch_size=4, threads=1,
                     chat_template=True, batch_tokens=600)
    lay = res["layouts"]
    assert set(lay) == {"corpus order", "longest first (extraction)", "token budget 600",
                        "length chunks (evaluation)"}
    budget = lay["token budget 600"]
    assert budget["max_padded"] <= max(600, res["max_len"]) and budget["max_rows"] <= 16
    assert lay["longest first (extraction)"]["efficiency"] >= lay["corpus order"]["efficiency"]
    assert all(0 < r["efficiency"] <= 1 and r["tokens_per_s"] > 0 for r in lay.values())
    assert all(r["queries"] == list(range(12)) for r in lay.values())  # each query once
    assert bm.main(["--padding", "--model-dir", str(prepared), "--layer", "1", "--queries", "8",
                    "--batch-size", "4", "--threads", "1"]) == 0
    assert "padding efficiency" in capsys.readouterr().out
