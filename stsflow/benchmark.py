"""Extraction benchmark: prints figures, asserts nothing (machines are shared and noisy; compare
the ratios within one run).

    stsflow bench --model-dir results/models/smollm2-135m --sae-dir results/sae/smollm2-135m/L12/main

Measures, on the same queries: a full forward pass, a bare forward stopped after the layer, the
extraction (stop at layer + SAE encode + sparse Parquet write + statistics) in plain mode and in
ICL mode with the shared demonstration prefix cached, and the ICL mode without the cache (prefix
recomputed with every query, as a naive implementation would); the same two extractions with the
baseline predictors' panel gathered in the pass (features.panel: its added cost); the same with
the residuals kept for a sweep (features.residuals), and a sweep SAE encoding those residuals
without the model; then bytes per non-zero and per kept residual on disk.

    stsflow bench --predictors results --model smollm2-135m --sft math --layer 12 --sae main

times every registered predictor's scoring (the sts rule's reduction) on a finished run's files.

    stsflow bench --padding --model-dir results/models/smollm2-135m

measures batching by length on MMLU-Pro-shaped queries (10 options, about 80 to 400 tokens with
the chat scaffolding, in an order unrelated to length, as a hub category comes): padding efficiency (real tokens over padded
tokens) and tokens/s of the forward stopped after the layer, with batches in corpus order (each
padded to its longest member) against the extraction's batches (longest first, so each batch
holds similar lengths), the same with a token budget per batch (``models.<m>.batch_tokens``,
``--batch-tokens``, by default batch size x the median query length: the fixed batches' memory
on average; up to 4 x batch size rows) and the evaluation's length chunks
(``models.batching.length_chunks``).

    stsflow bench --sae-sweep --results results --variant width=1152 ...

trains SAE recipes on one layer's cached residuals and prints each one's training seconds and
quality on held-out tokens (stsflow.sae.sweep).

    stsflow bench --generate --model-dir results/models/smollm2-135m

runs the ``generate`` metric (official MMLU-Pro CoT prompt, greedy) with each generation engine
on the same items of the built-in domains (``--domains``, ``--queries`` items each,
``--max-new-tokens``, ``--k-shot`` demonstrations, ``--batch-size``): seconds, items/s,
generated tokens/s (the built-in engine's token counts for every engine: the harness returns
text only), accuracy, and in how many items each engine's text equals the built-in engine's.

    stsflow bench --checkpoints --model-dir results/models/smollm2-135m

times a fine-tuning checkpoint and measures its size, for the config's recipe, and what the
config's checkpoint_every costs a whole run (``stsflow.checkpoint_bench``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def _timed(fn, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(model_dir: str, sae_dir: str | None, layer: int, n_queries: int, batch_size: int,
        threads: int, chat_template: bool = True) -> dict:
    from stsflow.data.builtin import sft_math
    from stsflow.features import extract as ex
    from stsflow.models.batching import pad_batch
    from stsflow.models.load import load_model
    from stsflow.models.tap import LayerTap
    from stsflow.sae.prepare import load_sae
    from stsflow.text.demos import sft_demo_indices
    from stsflow.text.segments import Segmenter

    torch.set_num_threads(threads)
    model, tok, info = load_model(model_dir, "float32", "cpu")
    sae_l0 = None
    if sae_dir:
        sae, sinfo = load_sae(sae_dir)
        sae_l0 = sinfo.get("l0")  # k of the random encoder when the SAE is not TopK
    else:
        from sae_lens import TopKSAE, TopKSAEConfig

        torch.manual_seed(0)
        sae = TopKSAE(TopKSAEConfig(d_in=info["hidden_size"], d_sae=8 * info["hidden_size"],
                                    k=32))
    seg = Segmenter.for_tokenizer(tok, chat_template)
    records = sft_math()
    demos = [records[i] for i in sft_demo_indices(len(records), 2, 0)]
    queries = [(i, seg.query(r, "sft")) for i, r in enumerate(records[:n_queries])]
    n_tokens = sum(len(q) for _, q in queries)
    head, context = seg.head(), seg.context(demos, "sft")
    tap = LayerTap(model, layer)

    def forward(stop: bool, prefix: list[int]):
        for b in range(0, len(queries), batch_size):
            batch = queries[b:b + batch_size]
            ids, mask = pad_batch([prefix + q for _, q in batch])
            with torch.no_grad():
                if stop:
                    tap.run(model, input_ids=ids, attention_mask=mask)
                else:
                    model(input_ids=ids, attention_mask=mask)

    out = {"tokens": n_tokens, "layer": layer, "n_layers": info["n_layers"]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def accumulator(paired: bool):
            from stsflow.features.panel_gather import PanelAccumulator, RandomEncoder
            from stsflow.features.shards import sae_width

            d, width = info["hidden_size"], sae_width(sae)
            enc = RandomEncoder.for_sae(sae, d, width, sae_l0, 0)
            return PanelAccumulator(d, width, enc, "cpu", keep_tokens=not paired,
                                    reference=(tmp / "plain_p.panel" / "resid.parquet"
                                               if paired else None))

        def extract(prefix, name, reference=None, panel=False, keep=False):
            ex.extract(model, sae, layer, queries, prefix, tmp / f"{name}.parquet",
                       tmp / f"{name}.stats.parquet", batch_size=batch_size,
                       reference=reference, log=lambda *a: None,
                       panel=accumulator(reference is not None) if panel else None,
                       panel_out=tmp / f"{name}.panel" if panel else None,
                       resid_out=tmp / f"{name}.resid" if keep else None)

        def sweep(name, reference=None):  # a second SAE of the layer: no model run
            ex.encode_cached(sae, tmp / f"{name}.resid", tmp / f"{name}.sweep.parquet",
                             tmp / f"{name}.sweep.stats.parquet", batch_size=batch_size,
                             reference=reference, log=lambda *a: None,
                             panel=accumulator(reference is not None),
                             panel_out=tmp / f"{name}.sweep.panel")

        timings = {
            "full forward (head + query)": _timed(lambda: forward(False, head)),
            "forward stopped after layer": _timed(lambda: forward(True, head)),
            "extract plain": _timed(lambda: extract(head, "plain")),
            "extract ICL, cached prefix": _timed(
                lambda: extract(context, "icl", tmp / "plain.parquet")),
            "forward stopped, ICL prefix recomputed per query": _timed(
                lambda: forward(True, context)),
            "extract plain + baseline panel": _timed(
                lambda: extract(head, "plain_p", panel=True)),
            "extract ICL, cached prefix + baseline panel": _timed(
                lambda: extract(context, "icl_p", tmp / "plain_p.parquet", panel=True)),
            "extract plain + panel + residuals kept for a sweep": _timed(
                lambda: extract(head, "plain_k", panel=True, keep=True)),
            "extract ICL + panel + residuals kept for a sweep": _timed(
                lambda: extract(context, "icl_k", tmp / "plain_k.parquet", panel=True,
                                keep=True)),
            "sweep SAE: plain from kept residuals + panel": _timed(
                lambda: sweep("plain_k")),
            "sweep SAE: ICL from kept residuals + panel": _timed(
                lambda: sweep("icl_k", tmp / "plain_k.sweep.parquet")),
        }
        kept = sum(f.stat().st_size for f in (tmp / "plain_k.resid").iterdir())
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(tmp / "plain.parquet").metadata
        nnz = sum(len(v) for v in pq.read_table(tmp / "plain.parquet")["feat_idx"].to_pylist())
        size = (tmp / "plain.parquet").stat().st_size
    out["tokens_per_s"] = {k: round(n_tokens / v, 1) for k, v in timings.items()}
    out["bytes_per_nonzero"] = round(size / nnz, 2)
    out["nonzeros_per_token"] = round(nnz / n_tokens, 1)
    out["row_groups"] = meta.num_row_groups
    out["kept_residual_bytes_per_token"] = round(kept / n_tokens, 1)
    return out


def mmlu_pro_shaped(n: int, seed: int = 0) -> list[dict]:
    """``n`` items in the MMLU-Pro schema with 10 options, question lengths log-uniform from 2 to
    220 words (rendered with SmolLM2's chat template: about 80 to 400 tokens, real categories'
    spread), in a random order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    words = ("the of a rate force value system cell court price energy model law which "
             "given following most likely total mass charge share tax claim").split()
    items = []
    for i in range(n):
        q_words = int(np.exp(rng.uniform(np.log(2), np.log(220))))  # the question's share
        o_words = int(rng.integers(1, 1 + max(2, q_words // 12)))
        items.append({
            "question_id": i, "category": "bench",
            "question": " ".join(rng.choice(words, q_words)) + "?",
            "options": [" ".join(rng.choice(words, o_words)) for _ in range(10)],
            "answer": "A", "answer_index": 0, "cot_content": "", "src": "bench"})
    return items


def padding_efficiency(lengths: list[int], batches: list[list[int]]) -> float:
    """Real tokens over the tokens of the padded batches (each padded to its longest)."""
    real = sum(lengths)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return real / padded if padded else float("nan")


def padding(model_dir: str, layer: int, n_queries: int, batch_size: int, threads: int,
            chat_template: bool = True, rounds: int = 3, batch_tokens: int | None = None
            ) -> dict:
    from stsflow.models.batching import length_chunks, pad_batch, token_batches
    from stsflow.models.load import load_model
    from stsflow.models.tap import LayerTap
    from stsflow.text.segments import Segmenter

    torch.set_num_threads(threads)
    model, tok, _ = load_model(model_dir, "float32", "cpu")
    seg = Segmenter.for_tokenizer(tok, chat_template)
    head = seg.head()
    queries = [head + seg.query(r, "domain") for r in mmlu_pro_shaped(n_queries)]
    lengths = [len(q) for q in queries]
    tap = LayerTap(model, layer)
    # corpus order; the extraction's order (features.extract.encode: longest first, batch_size
    # rows); the evaluation's chunks (rows of similar length, MIN_FILL of each batch real)
    longest = sorted(range(len(queries)), key=lambda i: -lengths[i])
    if batch_tokens is None:
        batch_tokens = batch_size * sorted(lengths)[len(lengths) // 2]
    layouts = {
        "corpus order": [list(range(b, min(b + batch_size, len(queries))))
                         for b in range(0, len(queries), batch_size)],
        "longest first (extraction)": [longest[b:b + batch_size]
                                       for b in range(0, len(longest), batch_size)],
        f"token budget {batch_tokens}": token_batches(lengths, 4 * batch_size, batch_tokens),
        "length chunks (evaluation)": length_chunks(lengths, batch_size),
    }

    def forward(batches):
        for b in batches:
            ids, mask = pad_batch([queries[i] for i in b])
            with torch.no_grad():
                tap.run(model, input_ids=ids, attention_mask=mask)

    out = {"queries": len(queries), "tokens": sum(lengths), "min_len": min(lengths),
           "max_len": max(lengths), "rounds": rounds, "layouts": {}}
    # the layouts take turns, round after round, and each keeps its median: on a shared machine
    # a burst of load then hits every layout alike rather than one of them
    times: dict[str, list[float]] = {name: [] for name in layouts}
    forward(layouts["corpus order"][:1])  # warm-up
    for _ in range(rounds):
        for name, batches in layouts.items():
            start = time.perf_counter()
            forward(batches)
            times[name].append(time.perf_counter() - start)
    for name, batches in layouts.items():
        sec = sorted(times[name])[len(times[name]) // 2]
        out["layouts"][name] = {"batches": len(batches),
                                "queries": sorted(i for b in batches for i in b),
                                "efficiency": round(padding_efficiency(lengths, batches), 3),
                                "max_rows": max(len(b) for b in batches),
                                "max_padded": max(len(b) * max(lengths[i] for i in b)
                                                  for b in batches),
                                "tokens_per_s": round(sum(lengths) / sec, 1)}
    return out


def predictor_costs(results: str, model: str, sft: str, layer: int, sae: str = "main",
                    n_top: int = 100, repeats: int = 3) -> dict:
    """Seconds per domain of each registered predictor's scoring (best of ``repeats``), on the
    files a finished run left for one SAE of the layer: what the sts rule spends on each."""
    from stsflow import scores
    from stsflow.features.panel import read_space_stats
    from stsflow.features.stats import Stats
    from stsflow.io.files import read_table

    root = Path(results)
    acts = root / "acts" / model / f"L{layer}" / sae
    if not acts.is_dir():
        raise FileNotFoundError(f"{acts} does not exist: no SAE {sae!r} at layer {layer}. Fix: "
                                "pass --sae with one of the names under "
                                f"{acts.parent} (config: the layer's sae or sweep names)")
    domains = sorted(p.name for p in (acts / "domain").iterdir())

    def stats(kind, corpus, mode):
        base = acts / kind / corpus
        return {sp: (Stats.read(base / f"{mode}.stats.parquet") if sp == "sae"
                     else read_space_stats(base / f"{mode}.panel", sp)) for sp in scores.SPACES}

    shift_dir = root / "shift" / model / f"L{layer}" / sae / sft
    shifts = {sp: read_table(shift_dir / ("s0.parquet" if sp == "sae" else f"s0.{sp}.parquet"))
              for sp in (*scores.SPACES, "unaligned")
              if (shift_dir / ("s0.parquet" if sp == "sae" else f"s0.{sp}.parquet")).exists()}
    out = {}
    for name in scores.pretraining_predictors():  # before_after needs a fine-tuning run
        pred = scores.PREDICTORS[name]
        best = []
        for d in domains:
            x = scores.ScoreInputs(n_top=n_top, shifts=shifts, plain=stats("domain", d, "plain"),
                                   icl=stats("domain", d, "icl"),
                                   domain_panel=acts / "domain" / d / "plain.panel",
                                   sft_panel=acts / "sft" / sft / "plain.panel",
                                   sft_grad=root / "grads" / model / "sft" / f"{sft}.parquet",
                                   domain_grad=root / "grads" / model / "domain" / f"{d}.parquet")
            best.append(_timed(lambda: pred.fn(x), repeats))
        out[name] = sum(best) / len(best)
    return out


def generation(model_dir: str, domains: list[str], n_items: int, max_new_tokens: int,
               k_shot: int, batch_size: int, threads: int,
               engines: tuple[str, ...] = ("builtin", "lm_eval_hf")) -> dict:
    """Each engine's time and agreement on the same generate runs (module docstring)."""
    from stsflow.data import corpora
    from stsflow.evaluate import scoring as metrics
    from stsflow.models.load import load_model

    torch.set_num_threads(threads)
    model, tok, _ = load_model(model_dir, "float32", "cpu")
    out = {e: {"seconds": 0.0, "items": 0, "tokens": 0, "correct": 0, "same": 0}
           for e in engines}
    for domain in domains:
        items = corpora.load_corpus({"builtin": {"name": domain, "split": "test"}},
                                    "mmlu_pro")[:n_items]
        demos = corpora.load_corpus({"builtin": {"name": domain, "split": "demos"}}, "mmlu_pro")
        rows = {}
        for engine in engines:
            start = time.perf_counter()
            rows[engine] = metrics.eval_generate(
                model, tok, items, demos, subject=domain, k_shot=k_shot,
                max_new_tokens=max_new_tokens, batch_size=batch_size, engine=engine)
            r = out[engine]
            r["seconds"] += time.perf_counter() - start
            r["items"] += len(items)
            r["correct"] += sum(x["correct"] for x in rows[engine])
        # the harness returns text only: every engine is credited with the built-in engine's
        # generated tokens (the same work wherever the texts agree, which "same" counts)
        tokens = sum(x["n_generated"] for x in rows[engines[0]])
        for engine in engines:
            out[engine]["tokens"] += tokens
            out[engine]["same"] += sum(a["output"] == b["output"]
                                       for a, b in zip(rows[engine], rows[engines[0]]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="stsflow bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", help="prepared model (extraction benchmark)")
    p.add_argument("--predictors", metavar="RESULTS",
                   help="time each predictor's scoring on this finished run instead")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--sft", default="math")
    p.add_argument("--sae-dir", default=None, help="prepared SAE (default: random TopK 8x)")
    p.add_argument("--layer", type=int, default=12)
    p.add_argument("--sae", default="main", help="SAE name at that layer (--predictors)")
    p.add_argument("--queries", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default 2; --sae-sweep: 1, as prepare_sae on a CPU)")
    p.add_argument("--padding", action="store_true",
                   help="padding efficiency and tokens/s by batch layout (MMLU-Pro-shaped)")
    p.add_argument("--generate", action="store_true",
                   help="the generate metric with each engine: time and agreement")
    p.add_argument("--checkpoints", action="store_true",
                   help="time and disk cost of fine-tuning checkpoints (stsflow.checkpoint_bench)")
    p.add_argument("--sft-items", default="results/data/sft/math.parquet",
                   help="--checkpoints: the materialised SFT set")
    p.add_argument("--config", default="config.yaml",
                   help="--checkpoints, --sae-sweep: the config (its fine-tuning recipe; its "
                        "SAE, the sweep's base recipe)")
    p.add_argument("--steps", type=int, default=6, help="--checkpoints: steps timed")
    p.add_argument("--domains", default="arithmetic,biology,law",
                   help="--generate: built-in domains (comma-separated)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--k-shot", type=int, default=1)
    p.add_argument("--batch-tokens", type=int, default=None,
                   help="--padding: the token budget layout's budget (default: batch size x "
                        "the median query length)")
    p.add_argument("--sae-sweep", action="store_true",
                   help="train SAE recipe variants on one layer's cached residuals and print "
                        "their quality (stsflow.sae.sweep)")
    p.add_argument("--results", default="results",
                   help="--sae-sweep: a run's results folder (its models/ and data/)")
    p.add_argument("--variant", action="append",
                   help="--sae-sweep: key=value,... changes to the base recipe (repeatable)")
    p.add_argument("--loss-recovered", metavar="all|I,J",
                   help="--sae-sweep: also the next-token loss recovered of these rows")
    p.add_argument("--keep", metavar="FILE",
                   help="--sae-sweep: keep the cached residuals in this file for the next run")
    p.add_argument("--time-jobs", metavar="I,J",
                   help="--sae-sweep: time the whole train_sae job of these rows")
    p.add_argument("--json", help="--sae-sweep: also write the rows to this JSON file")
    args = p.parse_args(argv)
    if args.sae_sweep:
        from stsflow.sae.sweep import main as sweep

        args.threads = args.threads or 1
        return sweep(args)
    if args.checkpoints:
        from stsflow.checkpoint_bench import checkpoint_cost, report

        if not args.model_dir:
            p.error("--checkpoints needs --model-dir")
        report(checkpoint_cost(args.model_dir, args.sft_items, args.config, args.steps,
                               args.threads or 2))
        return 0
    args.threads = args.threads or 2
    if args.generate:
        if not args.model_dir:
            p.error("--generate needs --model-dir")
        domains = [d for d in args.domains.split(",") if d]
        res = generation(args.model_dir, domains, args.queries, args.max_new_tokens,
                         args.k_shot, args.batch_size, args.threads)
        print(f"generate on {len(domains)} built-in domains x {args.queries} items, "
              f"{args.k_shot}-shot, up to {args.max_new_tokens} new tokens, batches of "
              f"{args.batch_size}, {args.threads} threads")
        for engine, r in res.items():
            print(f"  {engine:<12s} {r['seconds']:>7.1f} s  {r['items'] / r['seconds']:>6.2f} "
                  f"items/s  {r['tokens'] / r['seconds']:>7.1f} generated tok/s  accuracy "
                  f"{r['correct'] / r['items']:.3f}  same text as builtin: "
                  f"{r['same']}/{r['items']}")
        return 0
    if args.padding:
        if not args.model_dir:
            p.error("--padding needs --model-dir")
        res = padding(args.model_dir, args.layer, args.queries, args.batch_size, args.threads,
                      batch_tokens=args.batch_tokens)
        print(f"{res['queries']} MMLU-Pro-shaped queries, {res['tokens']} tokens "
              f"({res['min_len']} to {res['max_len']} each), batches of {args.batch_size}, "
              f"forward stopped after layer {args.layer}, {args.threads} threads, median of "
              f"{res['rounds']} interleaved rounds")
        base = res["layouts"]["corpus order"]["tokens_per_s"]
        for name, r in res["layouts"].items():
            print(f"  {name:<28s} {r['batches']:>3d} batches (largest {r['max_rows']} rows, "
                  f"{r['max_padded']} padded tokens)  padding efficiency "
                  f"{r['efficiency']:.3f}  {r['tokens_per_s']:>8.1f} tok/s "
                  f"({r['tokens_per_s'] / base:.2f}x corpus order)")
        return 0
    if args.predictors:
        costs = predictor_costs(args.predictors, args.model, args.sft, args.layer, args.sae)
        print(f"seconds per domain of each predictor's scoring, layer {args.layer}, SAE "
              f"{args.sae}, N=100")
        for name, sec in costs.items():
            print(f"  {name:<20s} {sec * 1000:>9.2f} ms")
        return 0
    if not args.model_dir:
        p.error("--model-dir is required (or --predictors RESULTS)")
    res = run(args.model_dir, args.sae_dir, args.layer, args.queries, args.batch_size,
              args.threads)
    print(f"{res['tokens']} query tokens, layer {res['layer']} of {res['n_layers']}, "
          f"{args.threads} threads")
    base = res["tokens_per_s"]["forward stopped after layer"]
    for name, tps in res["tokens_per_s"].items():
        print(f"  {name:<50s} {tps:>9.1f} tok/s  ({tps / base:.2f}x stopped forward)")
    print(f"  bytes per non-zero on disk: {res['bytes_per_nonzero']} "
          f"({res['nonzeros_per_token']} non-zeros per token, zstd, float16)")
    print(f"  kept residuals on disk: {res['kept_residual_bytes_per_token']} bytes per query "
          "token (float16, zstd)")
    return 0
