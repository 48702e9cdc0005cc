"""Long jobs report progress while they run (stsflow.progress): every job that trains or
generates writes lines with its count, rate and ETA into its log as it goes, not when it is
done. Each job runs here on the tiny model with a handler that notes, for every progress line,
whether the job's output existed yet: it must not (outputs are written, atomically, at the end)."""

from __future__ import annotations

import json
import logging
import re

import pytest
from conftest import domain_records, make_sae, sft_records

from stsflow import progress
from stsflow.config.settings import (CheckpointSettings, EvalSettings, ExtractSettings,
                                     FinetuneSettings, ModelSettings, SaeSettings)
from stsflow.data import corpora
from stsflow.jobs import extract as extract_job
from stsflow.jobs import prepare as prepare_job
from stsflow.jobs import validate as validate_job
from stsflow.mode import Mode

MSPEC = {"source": {"local": {"path": "unused: the jobs read the prepared directory"}},
         "dtype": "float32", "device": "cpu", "chat_template": True, "batch_size": 3,
         "max_length": 512}
STS = {"sft_tokens": 100000, "domain_tokens": 100000, "t": 2, "m": 2, "feat_dtype": "float32",
       "row_group_rows": 65536, "query_tokens": "content", "sample_seed": 0}
LINE = re.compile(r"^(?P<what>.+?) (?P<done>\d+)/(?P<total>\d+) \(\d+%\), .+, elapsed "
                  r"\d+:\d\d:\d\d, ETA (\d+:\d\d:\d\d|-)")


@pytest.fixture(scope="module")
def job(tiny_model_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("progress")
    prepare_job.prepare_model(ModelSettings.with_defaults(
        source={"local": {"path": str(tiny_model_dir)}}), d / "model")
    make_sae(width=64, k=6).save_model(str(d / "sae_files"))
    (d / "sae").mkdir()
    (d / "sae" / "stsflow_sae.json").write_text(json.dumps(
        {"kind": "local", "path": str(d / "sae_files"), "width": 64}))
    corpora.write_records(sft_records(12), d / "sft.parquet", {"source": "test"})
    corpora.write_records(domain_records("law", 7), d / "law.test.parquet")
    corpora.write_records(domain_records("law", 3, offset=50), d / "law.demos.parquet")
    return d


def finetune(d, method, **extra):
    recipe = FinetuneSettings.with_defaults(method, 0, epochs=2, lr=1e-3, batch_size=4,
                                            micro_batch_size=2, max_length=96, **extra)
    validate_job.finetune(d / "model", ModelSettings.with_defaults(**MSPEC), d / "sft.parquet",
                          recipe, d / f"ft-{method}", d / f"ft-{method}.history.parquet",
                          threads=1, checkpoints=CheckpointSettings(0, False))
    return d / f"ft-{method}"


def grpo(d):
    return finetune(d, "grpo", grpo={"steps": 3, "prompts_per_step": 2, "group_size": 2,
                                     "max_new_tokens": 4, "temperature": 1.0, "beta": 0.04,
                                     "lr": 1e-3, "loss_type": "grpo"})


def sae(d):
    train = {"architecture": "topk", "width": 64, "k": 4, "tokens": 1024, "batch_tokens": 64,
             "lr": 3e-3, "context_length": 32, "seed": 0, "corpora": ["arith"]}
    prepare_job.prepare_sae(d / "model", ModelSettings.with_defaults(**MSPEC), 1,
                            SaeSettings.with_defaults(train=train, eval_tokens=200),
                            {"arith": ("sft", d / "sft.parquet")}, ["arith"], ["arith"],
                            d / "sae-trained", where="models.tiny.layers.1.sae")
    return d / "sae-trained"


def extract(d):
    extract_job.extract(d / "model", d / "sae", ModelSettings.with_defaults(**MSPEC), 1,
                        Mode.parse("plain"), {"sft_items": d / "sft.parquet"},
                        ExtractSettings.with_defaults("sft", **STS), d / "plain.parquet",
                        d / "plain.stats.parquet", corpus="arith", threads=1)
    return d / "plain.parquet"


def evaluate(d):
    settings = EvalSettings.with_defaults(metrics=["nll", "generate"], k_shot=0,
                                          max_new_tokens=4, batch_size=2)
    validate_job.evaluate(d / "model", ModelSettings.with_defaults(**MSPEC),
                          d / "law.test.parquet", d / "law.demos.parquet", settings,
                          {"model": "tiny"}, d / "eval.parquet", subject="law", threads=1)
    return d / "eval.parquet"


def gradients(d):
    extract_job.gradients(d / "model", ModelSettings.with_defaults(**MSPEC), "sft",
                          d / "sft.parquet", {"sample_seed": 0, "grad_examples": 6,
                                              "grad_dim": 16, "control_seed": 0},
                          ["q_proj", "v_proj"], d / "grad.parquet", threads=1)
    return d / "grad.parquet"


def replay(d):
    validate_job.replay(d / "model", ModelSettings.with_defaults(**MSPEC), d / "law.test.parquet",
                        d / "replay.parquet", max_new_tokens=4, batch_size=2, threads=1)
    return d / "replay.parquet"


# job: (what it runs, the output written at its end, the progress lines' prefixes and totals)
JOBS = {
    "finetune": (lambda d: finetune(d, "lora"), {"step": 6}),
    "grpo": (grpo, {"grpo step": 3}),
    "sae training": (sae, {"SAE L1 step": 16}),
    "extraction": (extract, {"extract L1": None}),
    "evaluation": (evaluate, {"evaluate": 7, "generate": 7}),
    "gradients": (gradients, {"gradients": 6}),
    "replay": (replay, {"generate": 7}),
}


@pytest.mark.parametrize("name", list(JOBS))
def test_progress_is_logged_while_the_job_runs(job, name, monkeypatch):
    run, expected = JOBS[name]
    monkeypatch.setattr(progress, "EVERY_S", 0.0)  # a line per update, not one per 30 s
    seen = []
    out = {"path": None}

    class Watch(logging.Handler):
        def emit(self, record):
            m = LINE.match(record.getMessage())
            if m:
                path = out["path"]
                seen.append((m.group("what"), int(m.group("done")), int(m.group("total")),
                             path is not None and path.exists()))

    # the output each job writes at its end, known before it runs
    outputs = {"finetune": "ft-lora", "grpo": "ft-grpo", "sae training": "sae-trained",
               "extraction": "plain.parquet", "evaluation": "eval.parquet",
               "gradients": "grad.parquet", "replay": "replay.parquet"}
    out["path"] = job / outputs[name]
    handler = Watch()
    logger = logging.getLogger("stsflow")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        assert run(job) == out["path"]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert out["path"].exists()
    for what, total in expected.items():
        lines = [s for s in seen if s[0] == what]
        assert len(lines) >= 2, (what, seen)
        assert not any(written for *_, written in lines), "a line came after the output"
        dones = [done for _, done, _, _ in lines]
        assert dones == sorted(dones) and dones[-1] == lines[-1][2]
        if total is not None:
            assert lines[-1][2] == total


def test_lines_are_throttled_to_one_every_period_plus_the_first_and_last(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    lines = []
    p = progress.Progress("step", 10, "steps", log=lines.append, every=30)
    for _ in range(10):
        clock[0] += 7.0  # a step every 7 s: lines at step 1, step 6 (35 s later), the last
        p.update()
    assert [line.split(" (")[0] for line in lines] == ["step 1/10", "step 6/10", "step 10/10"]
    assert lines[0] == ("step 1/10 (10%), 7.00 s per step, elapsed 0:00:07, ETA 0:01:03")
    assert lines[-1].endswith("elapsed 0:01:10, ETA 0:00:00")


def test_a_resumed_run_rates_only_its_own_steps(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    lines = []
    p = progress.Progress("step", 100, "steps", log=lines.append, start=60)
    clock[0] = 20.0
    p.update(detail="loss 1.0")
    # 1 step in 20 s, 39 to go
    assert lines == ["step 61/100 (61%), 20.00 s per step, elapsed 0:00:20, ETA 0:13:00 | "
                     "loss 1.0"]
