"""The GPU check: one self-contained run, no network, a few minutes on one GPU.

    python -m stsflow.gpu_check --device cuda --out gpu_check.json      (make gpu-check)

For each model shape (Qwen2.5-0.5B's and Qwen2.5-7B's configs with random weights, cut to their
first ``--layers`` blocks so a 7B-shaped model fits any card) with a random TopK SAE of width
16 x hidden (65,536 for a 4,096-wide model, the paper's Llama SAE) on the block in the middle:

* **accuracy**: the residual stream after that block and the SAE's feature values, computed on
  the device with the model in bfloat16 and in float32 (the SAE in float32, as the workflow keeps
  it), against a float64 reference on the CPU from the same weights and tokens: relative L2
  error, and the share of the reference's active features that the device run also activates.
  transformers computes RMSNorm and the rotary embedding in float32 even in a float64 model, so
  the reference itself has a floor (docs/performance.md): float32 figures near it are at it;
* **speed**: tokens/s of a forward pass stopped after the block (``LayerTap``), of the extraction
  as the workflow runs it (stopped forward, SAE encoding, sparse shard and statistics written),
  and of a full forward; the stopped forward's model FLOP utilisation (MFU) against the card's
  dense bfloat16 peak, for the cards listed in ``PEAK_BF16`` (else not reported);
* **memory**: peak GPU memory of the stopped forward (the model alone on the device) and of the
  extraction (model and SAE), next to what ``stsflow.config.resources`` estimates for the
  workflow's ``extract`` job of the same shape, batch, length and SAE width.

The hooked block sits in the middle of the kept blocks, so the SAE's share of an extraction's
time is larger here than in a full-depth model; the stopped forward's MFU is not affected.

It prints a table and writes the figures as JSON; it asserts nothing (the figures are the
result). On a CPU (``--device cpu``) it runs the same steps, without the memory and MFU figures.
"""

from __future__ import annotations

import argparse
import copy
import gc
import tempfile
import time
from pathlib import Path

import torch

# Qwen2 configs: the two sizes the README's presets and the paper's tables use, and a tiny one
# for a CPU smoke run. Values from the models' config.json (hidden, MLP, heads, key/value heads).
SHAPES = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1000, tie_word_embeddings=False),
}
# dense bfloat16 tensor-core peak (FLOP/s) from the vendors' data sheets, by device name; the
# first name found in the device's name counts (the PCIe and NVL cards before the SXM ones)
PEAK_BF16 = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H200 NVL": 835e12, "H200": 989e12,
             "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def build(shape: str, n_layers: int):
    """A random-weight Qwen2 model of ``shape`` with ``n_layers`` blocks (float32, CPU)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(num_hidden_layers=n_layers, max_position_embeddings=4096,
                      **SHAPES[shape])
    torch.manual_seed(0)
    return Qwen2ForCausalLM(cfg).eval()


def random_sae(d: int, width: int, k: int):
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(1)
    sae = TopKSAE(TopKSAEConfig(d_in=d, d_sae=width, k=k))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, d ** -0.5)
    return sae.eval()


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    got, ref = got.double().cpu(), ref.double().cpu()
    return float(torch.linalg.vector_norm(got - ref) / torch.linalg.vector_norm(ref))


def active_overlap(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Share of the reference's active (token, feature) pairs that ``got`` also activates."""
    got, ref = got.cpu() != 0, ref.cpu() != 0
    return float((got & ref).sum() / ref.sum().clamp(min=1))


def block_params(model, layer: int) -> int:
    """Parameters a token's stopped forward multiplies by: blocks 0..layer."""
    from stsflow.models.tap import decoder_layers

    return sum(p.numel() for block in decoder_layers(model)[: layer + 1]
               for p in block.parameters())


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device: str, min_repeats: int = 2, min_seconds: float = 1.0) -> float:
    """Best time of ``fn`` over at least ``min_repeats`` runs and ``min_seconds`` in all (a
    millisecond forward needs many runs to rise above kernel-launch noise)."""
    fn()  # warm-up: kernels, allocator
    best, total, runs = float("inf"), 0.0, 0
    while runs < min_repeats or total < min_seconds:
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        took = time.perf_counter() - start
        best, total, runs = min(best, took), total + took, runs + 1
    return best


def _peak_mb(device: str, fn) -> float | None:
    if not device.startswith("cuda"):
        fn()
        return None
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    return torch.cuda.max_memory_allocated(device) / 1e6


def check_shape(shape: str, *, device: str, n_layers: int, batch: int, tokens: int,
                ref_tokens: int, k: int) -> dict:
    from stsflow.config import resources
    from stsflow.config.facts import kv_dim_of_config
    from stsflow.features import extract as ex
    from stsflow.models.tap import LayerTap

    base = build(shape, n_layers)
    d, layer = base.config.hidden_size, n_layers // 2
    gen = torch.Generator().manual_seed(2)
    ref_ids = torch.randint(0, base.config.vocab_size, (2, ref_tokens), generator=gen)
    ids = torch.randint(0, base.config.vocab_size, (batch, tokens), generator=gen)

    # float64 reference on the CPU
    ref_model = copy.deepcopy(base).double()
    # sae-lens's .to (not .double()) also sets the SAE's own dtype, which its encode casts to
    ref_sae = random_sae(d, 16 * d, k).to(dtype=torch.float64)
    with torch.no_grad():
        ref_resid = LayerTap(ref_model, layer).run(ref_model, input_ids=ref_ids)
        ref_feats = ref_sae.encode(ref_resid)
    del ref_model, ref_sae

    out = {"layers": n_layers, "hooked_layer": layer, "hidden": d, "sae_width": 16 * d, "k": k,
           "params": sum(p.numel() for p in base.parameters()), "batch": batch,
           "tokens": tokens, "dtypes": {}}
    for name, dtype in DTYPES.items():
        model = copy.deepcopy(base).to(device=device, dtype=dtype)
        tap = LayerTap(model, layer)
        run_ids = ids.to(device)
        queries = [(i, ids[i].tolist()) for i in range(batch)]

        def stopped():
            with torch.no_grad():
                tap.run(model, input_ids=run_ids)

        def full():
            with torch.no_grad():
                model(input_ids=run_ids, use_cache=False)

        peak_stopped = _peak_mb(device, stopped)  # the model alone on the device
        dev_sae = random_sae(d, 16 * d, k).to(device=device)  # float32, as the workflow keeps it
        with torch.no_grad():
            resid = tap.run(model, input_ids=ref_ids.to(device))
            feats = dev_sae.encode(resid.to(torch.float32))
        row = {"resid_rel_error": relative_error(resid, ref_resid),
               "feature_rel_error": relative_error(feats, ref_feats),
               "active_overlap": active_overlap(feats, ref_feats)}
        del resid, feats

        with tempfile.TemporaryDirectory() as tmp:
            def extraction():
                for f in Path(tmp).iterdir():
                    f.unlink()
                ex.extract(model, dev_sae, layer, queries, [], Path(tmp) / "s.parquet",
                           Path(tmp) / "s.stats.parquet", batch_size=batch, log=lambda *a: None)

            n = batch * tokens
            t_stop, t_ex, t_full = (_timed(f, device) for f in (stopped, extraction, full))
            row["tokens_per_s"] = {"forward stopped after the layer": round(n / t_stop, 1),
                                   "extraction (stop + SAE + shard)": round(n / t_ex, 1),
                                   "full forward": round(n / t_full, 1)}
            row["peak_mb"] = {"forward stopped": peak_stopped,
                              "extraction": _peak_mb(device, extraction)}
        # matmul FLOPs per token of the stopped forward: weights, and attention scores and
        # values over the sequence (causal: half of T on average)
        flops = 2 * block_params(model, layer) + 2 * (layer + 1) * tokens * d
        peak = next((v for k_, v in PEAK_BF16.items()
                     if device.startswith("cuda") and k_ in torch.cuda.get_device_name()), None)
        row["mfu"] = (round(flops * n / t_stop / peak, 3)
                      if peak and name == "bfloat16" else None)
        cfg = model.config.to_dict()
        est = resources.need("extract", resources.Shape(
            out["params"], d, n_layers, model.config.vocab_size, kv_dim_of_config(cfg)),
            dtype=name, device_is_cpu=False, batch=batch, tokens=tokens, sae_width=16 * d)
        row["estimated_gpu_mb"] = est.gpu_mb
        out["dtypes"][name] = row
        del model, dev_sae, tap
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def render(result: dict) -> str:
    lines = [f"GPU check on {result['device']} (torch {result['torch']})"]
    for shape, r in result["shapes"].items():
        lines.append(f"\n{shape}: {r['params'] / 1e9:.2f}B parameters in {r['layers']} blocks, "
                     f"hidden {r['hidden']}, SAE {r['sae_width']} wide (k {r['k']}) after block "
                     f"{r['hooked_layer']}, batch {r['batch']} x {r['tokens']} tokens")
        for dtype, row in r["dtypes"].items():
            lines.append(f"  {dtype}: residual rel. error {row['resid_rel_error']:.2e}, features "
                         f"{row['feature_rel_error']:.2e}, active features shared "
                         f"{row['active_overlap']:.4f}")
            for what, tps in row["tokens_per_s"].items():
                lines.append(f"    {what:<34s} {tps:>12.1f} tok/s")
            if row["mfu"] is not None:
                lines.append(f"    MFU of the stopped forward        {row['mfu']:.3f}"
                             "  (the config's throughput.gpu_mfu plans runtimes with it)")
            peaks = row["peak_mb"]
            if peaks["extraction"] is not None:
                lines.append(f"    peak GPU memory: stopped forward {peaks['forward stopped']:.0f}"
                             f" MB, extraction {peaks['extraction']:.0f} MB (estimate "
                             f"{row['estimated_gpu_mb']} MB)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stsflow.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shapes", default="0.5b,7b", help=f"of {sorted(SHAPES)}")
    p.add_argument("--layers", type=int, default=4, help="blocks kept of each model")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tokens", type=int, default=512, help="tokens per sequence (speed)")
    p.add_argument("--ref-tokens", type=int, default=128,
                   help="tokens per sequence of the float64 reference (2 sequences)")
    p.add_argument("--k", type=int, default=64, help="active features of the TopK SAE")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.cuda.set_device(torch.device(args.device))  # cuda:N measured on N, not on 0
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 (recorded)
    result = {"device": (torch.cuda.get_device_name() if args.device.startswith("cuda")
                         else "cpu"), "torch": torch.__version__,
              "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "shapes": {}}
    for shape in args.shapes.split(","):
        result["shapes"][shape] = check_shape(
            shape, device=args.device, n_layers=args.layers, batch=args.batch,
            tokens=args.tokens, ref_tokens=args.ref_tokens, k=args.k)
    print(render(result))
    if args.out:
        from stsflow.io.files import write_json

        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
