"""What checkpointing costs a fine-tuning run (``stsflow bench --checkpoints``): prints figures,
asserts nothing (machines are shared and noisy; compare within one run).

    stsflow bench --checkpoints --model-dir results/models/smollm2-135m \\
        --sft-items results/data/sft/math.parquet

The config's (default: the embedded ``config.yaml``) first model and first fine-tuning method,
with its recipe, train ``--steps`` optimizer steps twice on its SFT set: without checkpoints, and
with a checkpoint after every step (``stsflow.resume``, as the finetune job writes them, into a
temporary resume directory). Printed: the time of a step, of a checkpoint (written and synced)
and its size on disk; then, for the whole run at the config's ``finetune.checkpoint_every``, how
many checkpoints it writes, their time against the run's training time, and the disk they take
(two at most while one is written, none once the model is written).
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

SAVED = re.compile(r"checkpoint of step \d+/\d+ in \S+ \(([\d.]+) MB, ([\d.]+) s\)")


def checkpoint_cost(model_dir, sft_items, config_path="config.yaml", steps: int = 6,
                    threads: int = 2) -> dict:
    import dataclasses

    import torch

    from stsflow import config as stsconfig
    from stsflow.config.settings import (CHECKPOINT_KEYS, CheckpointSettings, FinetuneSettings,
                                         ModelSettings)
    from stsflow.data import corpora
    from stsflow.finetune.train import build_examples, finetune, total_steps
    from stsflow.jobs.common import load_job_model
    from stsflow.resume import Resume, interval
    from stsflow.text.segments import Segmenter

    cfg = stsconfig.load(config_path, base_dir=Path(config_path).resolve().parent)
    name = next(iter(cfg["models"]))
    model = ModelSettings.from_config({k: cfg["models"][name][k] for k in ModelSettings.keys()})
    ft = cfg["finetune"]
    method = ft["methods"][0]
    from stsflow.finetune.registry import method as registered
    from stsflow.finetune.registry import methods as all_methods

    entry = registered(method)
    if entry.section is not None or entry.variant is not None or not entry.sft_loop:
        raise ValueError(f"finetune.methods[0]: {method!r} has settings or variants of its own "
                         "or its own training loop; stsflow bench --checkpoints times the SFT "
                         "loop of a plain method. Fix: a config whose first method is lora or "
                         "full")
    sections = {m.section for m in all_methods().values() if m.section}
    keys = {k: v for k, v in ft.items() if k not in ("enabled", "methods", "processes",
                                                      *sections, *CHECKPOINT_KEYS)}
    recipe = FinetuneSettings.from_recipe(keys, method, cfg["sts"]["seeds"][0])
    policy = CheckpointSettings.from_config(cfg)
    records, _ = corpora.sample_records(corpora.read_records(sft_items), recipe.max_items,
                                        cfg["sts"]["sample_seed"])

    def train(resume):
        lm, tok, _ = load_job_model(model_dir, model, threads)
        lines: list[str] = []
        short = dataclasses.replace(recipe, max_steps=steps)
        start = time.perf_counter()
        finetune(lm, tok, records, short, use_chat_template=model.chat_template,
                 log=lines.append, resume=resume)
        return time.perf_counter() - start, lines

    lm, tok, _ = load_job_model(model_dir, model, threads)
    n_examples = len(build_examples(records, Segmenter.for_tokenizer(tok, model.chat_template),
                                    recipe.max_length))
    del lm
    run_steps = total_steps(n_examples, recipe)
    plain_s, _ = train(None)
    with tempfile.TemporaryDirectory(prefix="stsflow-ckpt-bench-") as tmp:
        resume = Resume(Path(tmp) / "run.resume", {"bench": True}, every=1)
        with_s, lines = train(resume)
    saves = [(float(mb), float(s)) for mb, s in (SAVED.search(x).groups() for x in lines
                                                 if SAVED.search(x))]
    every = interval(policy.checkpoint_every, run_steps)
    n_run = len([s for s in range(1, run_steps) if every and s % every == 0])
    save_s = sum(s for _, s in saves) / max(len(saves), 1)
    size_mb = max((mb for mb, _ in saves), default=0.0)
    step_s = plain_s / steps
    return {"model": name, "method": method, "threads": threads, "steps": steps,
            "n_examples": n_examples, "run_steps": run_steps, "every": every,
            "step_s": step_s, "with_checkpoints_s": with_s, "plain_s": plain_s,
            "saves": saves, "save_s": save_s, "size_mb": size_mb,
            "run_checkpoints": n_run, "run_train_s": step_s * run_steps,
            "run_checkpoint_s": n_run * save_s, "torch_threads": torch.get_num_threads()}


def report(res: dict) -> None:
    every = res["every"]
    print(f"{res['model']}, {res['method']} (the config's recipe), {res['threads']} threads; "
          f"{res['steps']} steps timed without and with a checkpoint after every step")
    print(f"  step:        {res['step_s']:.2f} s (without checkpoints)")
    each = ", ".join(f"{s:.2f}" for _, s in res["saves"])
    print(f"  checkpoint:  {res['save_s']:.2f} s written and synced (mean of "
          f"{len(res['saves'])}: {each}), {res['size_mb']:.1f} MB on disk")
    print(f"  {res['steps']} steps: {res['plain_s']:.1f} s without, "
          f"{res['with_checkpoints_s']:.1f} s with a checkpoint each "
          f"({res['with_checkpoints_s'] / res['plain_s'] - 1:+.1%})")
    share = res["run_checkpoint_s"] / res["run_train_s"]
    print(f"  the run: {res['run_steps']} steps ({res['n_examples']} examples), "
          f"finetune.checkpoint_every -> every {every or 'no'} step(s): "
          f"{res['run_checkpoints']} checkpoints, {res['run_checkpoint_s']:.1f} s against "
          f"{res['run_train_s']:.0f} s of training ({share:.1%}), disk "
          f"{2 * res['size_mb']:.1f} MB at most while one is written, 0 once the model is "
          "written")
