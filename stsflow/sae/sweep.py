"""A measured sweep of SAE training recipes on one layer of a finished run's model and corpora:
how the embedded default's recipe was chosen, and how a user checks their own.

    stsflow bench --sae-sweep --results results --variant width=1152 --variant width=1152,k=16

The base recipe is the config's SAE of ``--model``/``--layer`` (``--sae``: its name, default
the layer's own), trained as ``prepare_sae`` trains it: the same token windows of the same
corpora, the same held-out records (``sae.eval_tokens``), the same windows drawn for training
(``stsflow.sae.activations.covering_windows``), the same batches and trainer (``fit_sae``). The
layer's residuals over every training and held-out window are computed once (one pass of the
model), then every variant trains on them: a variant costs its SAE's training only. Each
``--variant`` is a comma-separated list of ``key=value`` changes to the base recipe: keys of
``sae.train`` (width, k, tokens, batch_tokens, lr, b_dec_init, seed, ...) or trainer options
(``aux_loss_coefficient``, sae-lens's TopK auxiliary loss on dead latents, 0 switches it off;
``dead_feature_window``, the steps without firing after which sae-lens counts a latent as dead
and the auxiliary loss trains it). The base recipe itself is always the first row. Every row is
measured on the base recipe's held-out records: a variant's ``seed`` changes its initialisation,
windows and batches, not the yardstick.

Each row gives the variant's fit seconds (sae-lens's training on cached residuals), its job
seconds (that, plus the model pass over the residuals it trains on, at the rate the cache pass
measured: what ``prepare_sae`` spends before its held-out evaluation, which every variant
shares), both also as a ratio to the base recipe's, and its quality figures on the held-out
tokens exactly as ``prepare_sae`` records them (``stsflow.sae.quality``): dead fraction (features
active on none of the held-out tokens), L0, fraction of variance explained, and with
``--loss-recovered all`` (or the rows' numbers, ``0,3``) the next-token loss recovered (three
model passes per variant). ``--keep FILE`` keeps the residuals for the next run.
``--time-jobs I,J`` then runs the whole ``train_sae`` job function (model passes, training,
held-out evaluation) for rows I and J one after the other and prints their seconds and ratio.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

def parse_variant(text: str, base) -> tuple:
    """(SaeTrainSettings, options) of ``key=value,...`` changes to the ``base`` recipe; options
    are sae-lens settings that are not config keys (fit_sae's ``options``)."""
    from stsflow.sae.train import SAE_OPTIONS, TRAINER_OPTIONS

    kinds = {k: type(v) for k, v in {**SAE_OPTIONS, **TRAINER_OPTIONS}.items()}
    fields = {f.name: f for f in dataclasses.fields(base)}
    changes, options = {}, {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = item.partition("=")
        if key in kinds:
            options[key] = kinds[key](value)
        elif key in fields and key != "corpora":
            current = getattr(base, key)
            changes[key] = type(current)(value) if current is not None else value
        else:
            raise ValueError(f"--variant {text!r}: unknown key {key!r}. Fix: one of "
                             f"{', '.join(sorted([*fields, *kinds]))}")
    return dataclasses.replace(base, **changes), options


@dataclasses.dataclass
class Cache:
    """The inputs every variant shares: the model, the windows, their residuals."""
    model: object
    layer: int
    device: str
    model_batch: int
    train_windows: list
    offsets: list  # first row of each training window in ``train_rows``
    train_rows: torch.Tensor
    held_out: list
    held_rows: torch.Tensor
    seconds_per_row: float  # the model pass that produced the rows

    def rows_of(self, indices: list[int]) -> torch.Tensor:
        return torch.cat([self.train_rows[self.offsets[i]:self.offsets[i + 1]] for i in indices])


def build_cache(results: Path, config: dict, model_name: str, layer: int, sae_name: str | None,
                threads: int, keep: Path | None = None, log=print) -> tuple[Cache, object, object]:
    """(cache, base recipe, SaeSettings) for the SAE of ``model_name``/``layer`` in a validated
    ``config``, its model and materialised corpora read from ``results``. ``keep``: a file that
    holds the residuals between runs (read when it holds those of the same windows, else
    written)."""
    from stsflow.config.saes import layer_saes, primary_sae
    from stsflow.config.settings import ModelSettings, SaeSettings
    from stsflow.jobs.common import load_job_model
    from stsflow.jobs.prepare import sae_training_windows
    from stsflow.sae import quality
    from stsflow.sae.activations import layer_residuals
    from stsflow.text.segments import Segmenter

    mconf = config["models"][model_name]
    entry = mconf["layers"][layer]
    name = sae_name or primary_sae(entry)
    sconf = {k: v for k, v in layer_saes(entry)[name].items() if k != "name"}
    if "train" not in sconf:
        raise ValueError(f"models.{model_name}.layers.{layer}: the SAE {name!r} is not trained "
                         "here. Fix: name a trained SAE with --sae")
    sae = SaeSettings.from_config(sconf)
    spec = sae.train
    mspec = ModelSettings.from_config({k: mconf[k] for k in ModelSettings.keys()})
    train_names = list(spec.corpora or config["sft"])
    eval_names = list(sae.eval_corpora or train_names)
    files = {n: ("sft", results / "data" / "sft" / f"{n}.parquet") if n in config["sft"]
             else ("domain", results / "data" / "domain" / f"{n}.test.parquet")
             for n in dict.fromkeys(train_names + eval_names)}
    missing = [str(f) for _, f in files.values() if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)}: not materialised. Fix: run the workflow "
                                "up to its SAEs first (or pass --results of a run that did)")
    model, tok, _ = load_job_model(results / "models" / model_name, mspec, threads)
    seg = Segmenter.for_tokenizer(tok, mspec.chat_template)
    pool = {n: sae_training_windows(tok, seg, [files[n]], spec.context_length, by_record=True)
            for n in files}
    held_out, train_windows = quality.split_held_out(pool, eval_names, train_names,
                                                     sae.eval_tokens, spec.seed)
    device = str(next(model.parameters()).device)
    key = [model_name, layer, train_windows, held_out]
    kept = torch.load(keep) if keep is not None and Path(keep).is_file() else None
    if kept is not None and kept["key"] == key:
        rows, held_rows, seconds = kept["rows"], kept["held_rows"], kept["seconds"]
        log(f"residuals read from {keep}")
    else:
        start = time.perf_counter()
        rows = layer_residuals(model, layer, train_windows, model_batch=mspec.batch_size,
                               device=device)
        seconds = time.perf_counter() - start
        held_rows = layer_residuals(model, layer, held_out, model_batch=mspec.batch_size,
                                    device=device)
        if keep is not None:
            torch.save({"key": key, "rows": rows, "held_rows": held_rows, "seconds": seconds},
                       keep)
    offsets = [0]
    for ids, skip in train_windows:
        offsets.append(offsets[-1] + len(ids) - skip)
    log(f"cached layer {layer}: {rows.shape[0]} training rows of {len(train_windows)} windows "
        f"in {seconds:.1f} s, {held_rows.shape[0]} held-out rows of {len(held_out)} windows")
    return (Cache(model, layer, device, mspec.batch_size, train_windows, offsets, rows, held_out,
                  held_rows, seconds / rows.shape[0]), spec, sae)


def run_variant(cache: Cache, spec, options: dict, loss_recovered: bool = False) -> dict:
    """Train one recipe on the cache (the batches ``train_sae`` would draw) and measure it."""
    from sae_lens import SAE

    from stsflow.sae.activations import covering_windows, residual_batches
    from stsflow.sae.quality import evaluate_sae, reconstruction_figures
    from stsflow.sae.train import NORM_BATCHES, fit_sae

    need = spec.tokens + NORM_BATCHES * spec.batch_tokens
    chosen = covering_windows(cache.train_windows, need, spec.seed)
    rows = cache.rows_of(chosen)
    data = residual_batches(rows, batch_tokens=spec.batch_tokens, total_tokens=need,
                            seed=spec.seed)
    start = time.perf_counter()
    trained = fit_sae(spec, rows.shape[1], cache.device, data, **options)
    fit_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        trained.save_inference_model(tmp)
        sae = SAE.load_from_disk(tmp, device=cache.device)
    sae.eval()
    out = {"width": spec.width, "k": spec.k, "tokens": spec.tokens,
           "batch_tokens": spec.batch_tokens, "lr": spec.lr, "b_dec_init": spec.b_dec_init,
           "seed": spec.seed,
           "options": options,
           "rows": rows.shape[0], "fit_s": fit_s,
           "job_s": fit_s + rows.shape[0] * cache.seconds_per_row,
           **reconstruction_figures(sae, cache.held_rows)}
    if loss_recovered:
        figures, _ = evaluate_sae(cache.model, cache.layer, sae, cache.held_out,
                                  model_batch=cache.model_batch, device=cache.device)
        out["loss_recovered"] = figures["loss_recovered"]
        assert figures["eval_tokens"] == out["eval_tokens"]
    return out


def time_jobs(cache: Cache, sae, recipes: list, log=print) -> list[float]:
    """Seconds of the whole ``train_sae`` job function (from the model's first pass to the
    saved SAE) for each ``(spec, options)``, one after the other."""
    from stsflow.sae.train import train_sae

    seconds = []
    for spec, options in recipes:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            train_sae(cache.model, cache.layer, cache.train_windows, spec, Path(tmp) / "sae",
                      d_in=cache.train_rows.shape[1], device=cache.device,
                      held_out=cache.held_out, model_batch=cache.model_batch,
                      log=lambda *a: None, options=options)
            seconds.append(time.perf_counter() - start)
    return seconds


def format_table(rows: list[dict]) -> list[str]:
    base = rows[0]
    lines = [f"{'#':>2} {'width':>6} {'k':>3} {'tokens':>7} {'batch':>5} {'lr':>7} {'b_dec':>5} "
             f"{'seed':>4} {'options':<24} {'fit s':>6} {'x base':>6} {'job s':>6} "
             f"{'x base':>6} {'dead':>6} {'L0':>6} {'FVE':>6} {'loss rec':>8}"]
    for i, r in enumerate(rows):
        opts = ",".join(f"{k}={v}" for k, v in r["options"].items()) or "-"
        lr = r.get("loss_recovered")
        lines.append(
            f"{i:>2} {r['width']:>6} {r['k']:>3} {r['tokens']:>7} {r['batch_tokens']:>5} "
            f"{r['lr']:>7.4g} {r['b_dec_init']:>5} {r['seed']:>4} {opts:<24} "
            f"{r['fit_s']:>6.1f} {r['fit_s'] / base['fit_s']:>6.2f} "
            f"{r['job_s']:>6.1f} {r['job_s'] / base['job_s']:>6.2f} {r['dead_fraction']:>6.3f} "
            f"{r['l0']:>6.2f} {r['fraction_variance_explained']:>6.3f} "
            f"{'-' if lr is None else f'{lr:.4f}':>8}")
    return lines


def main(args) -> int:
    from stsflow import config as stsconfig
    from stsflow.config.schema import read_yaml

    torch.set_num_threads(args.threads)
    config = stsconfig.validate(read_yaml(args.config), check_sources=False)
    results = Path(args.results)
    cache, base, sae = build_cache(results, config, args.model, args.layer, args.sae,
                                   args.threads, Path(args.keep) if args.keep else None)
    recipes = [(base, {})] + [parse_variant(v, base) for v in args.variant or []]
    measured = (range(len(recipes)) if args.loss_recovered == "all"
                else [int(i) for i in (args.loss_recovered or "").split(",") if i])
    rows = []
    for i, (spec, options) in enumerate(recipes):
        rows.append(run_variant(cache, spec, options, i in measured))
        print(format_table(rows)[-1], flush=True)
    print(f"\nSAE training sweep, layer {args.layer} of {args.model}, {args.threads} thread(s); "
          f"held-out tokens: {rows[0]['eval_tokens']}; dead = active on none of them; model "
          f"pass {cache.seconds_per_row * 1000:.2f} ms per training row")
    for line in format_table(rows):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    if args.time_jobs:
        picked = [int(i) for i in args.time_jobs.split(",")]
        seconds = time_jobs(cache, sae, [recipes[i] for i in picked])
        print("\nthe train_sae job function, end to end (model passes, training, held-out "
              "evaluation), one after the other:")
        for i, s in zip(picked, seconds):
            print(f"  row {i}: {s:.1f} s ({s / seconds[0]:.2f}x row {picked[0]})")
    return 0
