"""`stsflow plan`'s estimate of use beside the requests: model loads, starts and compute by
phase (prediction, validation), the prediction-vs-validation ratio for several candidate SFT
sets, and what grouping the prediction's jobs into one cluster job changes; the dry run's group
jobs parsed, and the rules' `group:` through Snakemake with a profile that groups."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from stsflow.config import resources
from stsflow.plan import parse_dry_run
from stsflow.plan_use import JobUse, grouped_seconds, longest_chain
from test_presets import offline_env  # no hub, an empty HF cache

PRESETS = REPO / "stsflow" / "presets"
# MMLU-Pro's test items per category (12,032 in all): as max_items they bound each domain's
# evaluation without cutting it, so the plan estimates it before the data is downloaded
MMLU_PRO_ITEMS = {"biology": 717, "business": 789, "chemistry": 1132, "computer_science": 410,
                  "economics": 844, "engineering": 969, "health": 818, "history": 381,
                  "law": 1101, "math": 1351, "other": 924, "philosophy": 499, "physics": 1299,
                  "psychology": 798}
LIMO_ITEMS = 817
# the lines that group the prediction, as profiles/slurm documents them (commented out there)
GROUPING = {"config": ["job_groups=prediction"], "group-components": ["prediction=100000"],
            "resources": ["gpu=1"], "set-resource-scopes": ["gpu=local"]}


def plan(tmp_path, configfile, profile) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "stsflow.cli", "plan", "--snakefile", str(REPO / "Snakefile"),
         "--configfile", str(configfile), "--profile", str(profile)],
        cwd=tmp_path, env=offline_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


def use_rows(out: str) -> dict[tuple[str, str], list[str]]:
    """(phase, as) -> the use table's cells."""
    rows = {}
    for m in re.finditer(r"^│ (prediction|validation|other) +│ ([a-z ]+?) +│(.*)│$", out, re.M):
        rows[(m.group(1), m.group(2))] = [c.strip() for c in m.group(3).split("│")]
    return rows


def grouping_profile(tmp_path):
    profile = tmp_path / "grouped"
    profile.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    (profile / "config.yaml").write_text(yaml.safe_dump({**cfg, **GROUPING}))
    return profile


def test_plan_prints_prediction_against_validation_for_five_candidate_sft_sets(tmp_path):
    """The Qwen preset with five candidate SFT sets shaped like LIMO: the prediction (the base
    model's SAE, extractions and gradients) against fine-tuning and evaluating the five (fully
    fine-tuned over 8 GPUs at three seeds, every domain evaluated by generation), estimated in
    starts, loads and compute, beside the requests."""
    cfg = yaml.safe_load((PRESETS / "qwen2.5-7b-instruct.yaml").read_text())
    limo = dict(cfg["sft"]["limo"], max_items=LIMO_ITEMS)
    cfg["sft"] = {name: dict(limo) for name in ("limo", "cand_b", "cand_c", "cand_d", "cand_e")}
    for name, d in cfg["domains"].items():
        d["max_items"] = MMLU_PRO_ITEMS[name]
    path = tmp_path / "five.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = plan(tmp_path, path, REPO / "profiles" / "slurm")
    print(out)
    rows = use_rows(out)
    sep, grp = rows[("prediction", "separate jobs")], rows[("prediction", "grouped")]
    # jobs: the SAE, 4 extractions per SFT set (plain, ICL at 3 seeds) and 2 per domain, a
    # gradients job per corpus; every one loads the model
    n_pred = 1 + 5 * 4 + 14 * 2 + 5 + 14
    assert sep[:3] == [str(n_pred), str(n_pred), f"{n_pred} / 0"]
    assert grp[:3] == [str(n_pred), "1", f"1 / {n_pred - 1}"]
    # validation: 15 sharded fine-tunings, 14 base and 210 tuned evaluations, 15 tuned
    # extractions; cards are neither
    assert rows[("validation", "separate jobs")][0] == str(15 + 14 + 210 + 15)
    assert rows[("other", "separate jobs")][0] == "15"
    # starts and loads, from the model's bfloat16 weights (one GPU per prediction job)
    n = cfg["models"]["qwen2.5-7b-instruct"]["shape"]["n_params"]
    start_h = n_pred * resources.START_S / 3600
    load_h = n_pred * 2 * n / resources.LOAD_BPS / 3600
    cached_h = (2 * n / resources.LOAD_BPS + (n_pred - 1) * 2 * n / resources.CACHE_BPS) / 3600
    assert float(sep[3]) == pytest.approx(start_h, abs=0.005)
    assert float(sep[4]) == pytest.approx(load_h, abs=0.005)
    assert float(grp[4]) == pytest.approx(cached_h, abs=0.005)
    # the forward passes are minutes: the prediction's estimate is starts and loads
    assert float(sep[5]) < 0.1 * float(sep[7]) and sep[6] == "-"
    for key in rows:
        start, load, compute, total = (float(rows[key][i]) for i in (3, 4, 5, 7))
        assert total == pytest.approx(start + load + compute, abs=0.02)
    val = rows[("validation", "separate jobs")]
    line = re.search(r"Predicting the 5 candidate SFT set\(s\) vs fine-tuning and evaluating "
                     r"them: ([\d.]+) vs ([\d.]+) device hours estimated \(validation/prediction "
                     r"(\d+)x\); requested ([\d.]+) vs ([\d.]+)", " ".join(out.split()))
    assert line, out[-3000:]
    pred_h, val_h, ratio = float(line.group(1)), float(line.group(2)), int(line.group(3))
    assert (pred_h, val_h) == (float(sep[7]), float(val[7]))
    assert ratio == round(val_h / pred_h)
    assert (float(line.group(4)), float(line.group(5))) == (float(sep[8]), float(val[8]))
    assert "Compute alone:" in out  # every job has an estimate: the data's sizes are bounded
    assert re.search(rf"{n_pred} cluster jobs become 1; {n_pred} model loads from the shared "
                     r"filesystem become 1", " ".join(out.split()))


def test_a_grouping_profile_runs_the_prediction_as_one_cluster_job(tmp_path):
    """The embedded default under profiles/slurm with the grouping lines: Snakemake's dry run
    puts exactly the base model's prediction jobs in one group job (a tuned model's extraction
    stays apart), and the plan counts it as one cluster job; without the lines, no group."""
    grouped = plan(tmp_path, REPO / "config.yaml", grouping_profile(tmp_path))
    assert re.search(r"82 cluster job\(s\) \(57 of them in 1 group job\(s\)",
                     " ".join(grouped.split()))
    assert use_rows(grouped)[("prediction", "grouped")][:3] == ["57", "1", "1 / 34"]
    plain = plan(tmp_path, REPO / "config.yaml", REPO / "profiles" / "slurm")
    assert "82 cluster job(s), " in plain and "which this profile does not" in plain
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--verbose",
         "--cores", "8", "--profile", str(grouping_profile(tmp_path / "again"))],
        cwd=REPO, env=offline_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = parse_dry_run(proc.stdout + proc.stderr)
    members = [j for j in jobs if j["group"] is not None]
    assert {j["group"] for j in members} == {1}
    assert {j["rule"] for j in members} == {"prepare_sae", "extract", "encode", "gradients"}
    assert all(not j["wildcards"].get("mode", "").startswith("tuned-") for j in members)
    tuned = [j for j in jobs if j["wildcards"].get("mode", "").startswith("tuned-")]
    assert tuned and all(j["group"] is None for j in tuned)


def test_parse_dry_run_reads_group_jobs_and_files():
    text = """[Mon Dec  7 22:12:49 2026]
rule finetune:
    input: a.parquet, b
    output: c
    wildcards: model=m, sft=s, method=lora, seed=0
    threads: 2
    resources: mem_mb=1000, runtime=30, gpu=1
Shell command: None
[Mon Dec  7 22:12:49 2026] Group job prediction (jobs in lexicogr. order):

    [Mon Dec  7 22:12:49 2026]
    rule extract:
        input: d
        output: e, f
        wildcards: model=m, mode=plain
        threads: 2
        resources: runtime=10, gpu=1
Shell command: None

    [Mon Dec  7 22:12:49 2026]
    rule gradients:
        output: g
        resources: runtime=10, gpu=1
Shell command: None
[Mon Dec  7 22:12:49 2026]
localrule sts:
    input: e
    output: h
"""
    jobs = parse_dry_run(text)
    assert [(j["rule"], j["group"]) for j in jobs] == [("finetune", None), ("extract", 1),
                                                        ("gradients", 1), ("sts", None)]
    assert jobs[0]["input"] == ["a.parquet", "b"] and jobs[1]["output"] == ["e", "f"]
    assert jobs[1]["wildcards"] == {"model": "m", "mode": "plain"} and jobs[1]["threads"] == 2
    assert jobs[2]["resources"] == {"runtime": 10.0, "gpu": 1.0}


def test_grouped_seconds_and_the_longest_chain():
    """A group job reads each model from the shared filesystem once, then from the page cache;
    the longest chain follows the files from job to job (local jobs between are instant)."""
    def use(model, start, load, busy, cached, outputs, loads=True):
        return JobUse("extract", model, "prediction", 1, 600.0,
                      resources.Seconds(start, load, busy), cached, None, [], outputs, loads)

    a = use("m", 100, 30, 5, 3, ["a"])
    b = use("m", 100, 30, 7, 3, ["b"])
    c = use("n", 100, 20, 1, 2, ["c"])
    enc = use("m", 100, 0, 2, 0, ["e"], loads=False)
    assert grouped_seconds([a, b, c, enc]) == (135) + (103 + 7) + (121) + (102)
    jobs = [{"rule": "extract", "output": ["a"]}, {"rule": "sts", "input": ["a"], "output": ["s"]},
            {"rule": "extract", "input": ["s"], "output": ["b"]},
            {"rule": "extract", "output": ["c"]}, {"rule": "encode", "input": ["b"],
                                                   "output": ["e"]}]
    assert longest_chain([a, b, c, enc], jobs) == 135 + 137 + 102
