"""``stsflow plan``: before anything is submitted, the jobs a config makes, where each runs
(the Snakemake process or the cluster), what each requests, and the GPU hours they ask for.

It runs Snakemake's own dry run (``snakemake -n --verbose``, with the profile given), so the
figures are the ones the jobs will be submitted with: threads and resources after the profile's
``set-threads`` and ``set-resources``, memory and runtime derived from the model and the job's
tokens (``stsflow.config.resources``). The token counts of fine-tuning and evaluation come from
the materialised data: before it exists (the plan shows materialize jobs) those jobs keep the
rules' fixed runtime, unless a ``max_items`` bounds it; materialising first (``snakemake
--profile ... --until materialize_sft materialize_domain``, local jobs; the plan prints the
command) gives them their estimates from the data. GPU hours are the requested wall time of
every GPU job times its GPUs, first attempt: an upper bound of what the run uses, and what an
allocation must cover."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RulePlan:
    rule: str
    jobs: int = 0
    local: bool = False
    threads: set = field(default_factory=set)
    host_mb: int = 0  # the largest request of one job
    gpu_mem_mb: int = 0
    gpus: int = 0
    runtime_min: float = 0.0  # summed over the jobs
    gpu_hours: float = 0.0


GROUP_JOB = re.compile(r"Group job (\S+) \(jobs in lexicogr\. order\):$")


def parse_dry_run(text: str) -> list[dict]:
    """Jobs of a verbose dry run: rule, wildcards, threads, resources, input and output files of
    each, and the group job it belongs to (``group``: the group job's number in the dry run,
    None for a job of its own). A group job's members are printed indented under it."""
    jobs, job, indent, group, n_groups = [], None, "", None, 0
    for line in text.splitlines():
        if GROUP_JOB.search(line):
            n_groups += 1
            group, job = n_groups, None
            continue
        m = re.match(r"^( *)(?:local)?rule (\w+):$", line)
        if m:
            indent = m.group(1)
            group = group if indent else None
            job = {"rule": m.group(2), "threads": 1, "resources": {}, "wildcards": {},
                   "group": group}
            jobs.append(job)
            continue
        if job is None:
            continue
        if not line.startswith(indent + "    "):
            job = None
            continue
        line = line[len(indent):]
        m = re.match(r"^    threads: (\d+)$", line)
        if m:
            job["threads"] = int(m.group(1))
        elif line.startswith("    benchmark: "):
            job["benchmark"] = line[len("    benchmark: "):].strip()
        elif line.startswith(("    input: ", "    output: ")):
            key, _, paths = line.strip().partition(": ")
            job[key] = paths.split(", ")
        elif line.startswith("    wildcards: "):
            job["wildcards"] = dict(item.partition("=")[::2]
                                    for item in line[len("    wildcards: "):].split(", "))
        elif line.startswith("    resources: "):
            for item in line[len("    resources: "):].split(", "):
                key, _, value = item.partition("=")
                try:
                    job["resources"][key] = float(value)
                except ValueError:
                    job["resources"][key] = value
    return jobs


def profile_config(profile: str | None) -> list[str]:
    """The ``config:`` entries of a Snakemake profile (found as Snakemake finds it)."""
    import yaml
    from snakemake.cli import get_profile_dir

    found = get_profile_dir(profile) if profile else None
    if not found:
        return []
    entries = (yaml.safe_load(found[1].read_text()) or {}).get("config") or []
    return [entries] if isinstance(entries, str) else list(entries)


def local_rules(snakefile: Path, configfile: Path | None, config: list[str]) -> set[str]:
    """The rules the Snakemake process runs itself under a cluster profile (``localrules``, which
    depend on the config: ``hub_downloads``). A dry run does not say which jobs are local, so the
    workflow is parsed through Snakemake's API; its ``_localrules`` set is not a public name
    (tested with Snakemake 9.27: tests/config/test_resources.py)."""
    from snakemake.api import SnakemakeApi
    from snakemake.cli import parse_config
    from snakemake.settings.types import (
        ConfigSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
    )

    overrides = parse_config(config)  # as `snakemake --config` parses them
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[configfile] if configfile else [],
                                           config=overrides),
            storage_settings=StorageSettings(), snakefile=snakefile, workdir=Path.cwd())
        return set(wf._workflow._localrules)


def summarise(jobs: list[dict], local: set[str]) -> list[RulePlan]:
    plans: dict[str, RulePlan] = {}
    for job in jobs:
        res = job["resources"]
        p = plans.setdefault(job["rule"], RulePlan(job["rule"], local=job["rule"] in local))
        p.jobs += 1
        p.threads.add(job["threads"])
        p.host_mb = max(p.host_mb, int(res.get("mem_mb", 0) or 0))
        p.gpu_mem_mb = max(p.gpu_mem_mb, int(res.get("gpu_mem_mb", 0) or 0))
        gpus = int(res.get("gpu", 0) or 0)
        p.gpus = max(p.gpus, gpus)
        runtime = float(res.get("runtime", 0) or 0)
        p.runtime_min += runtime
        if gpus and not p.local:
            p.gpu_hours += runtime / 60 * gpus
    order = defaultdict(int, {r: i for i, r in enumerate(
        ["fetch_model", "fetch_sae", "prepare_model", "prepare_sae", "extract", "encode",
         "gradients", "finetune", "finetune_sharded", "evaluate_base", "evaluate_tuned"])})
    return sorted(plans.values(), key=lambda p: (p.local, order.get(p.rule, 99), p.rule))


def shapes(configfile: Path | None) -> list[str]:
    """One line per model: its parameters and where the figure came from."""
    from stsflow.config import load
    from stsflow.config.facts import model_shape

    cfg = load(configfile or Path("config.yaml"), check_sources=False)
    lines = []
    for name, model in cfg["models"].items():
        shape, origin = model_shape(model, Path("."))
        lines.append(f"{name}: " + (
            f"{shape.n_params / 1e9:.2f}B parameters, hidden {shape.hidden_size}, "
            f"{shape.n_layers} layers, vocabulary {shape.vocab_size}, {model['dtype']} (from "
            f"{origin})" if shape else "shape unknown offline: the rules request fixed memory. "
            f"Fix: set models.{name}.shape (n_params, hidden_size, vocab_size) and n_layers"))
    return lines


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="stsflow plan", description=__doc__)
    parser.add_argument("--configfile", type=Path, default=None,
                        help="the config (default: config.yaml in this directory)")
    parser.add_argument("--profile", default=None,
                        help="Snakemake profile the run will use, e.g. profiles/slurm")
    parser.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, as snakemake --config")
    parser.add_argument("--gpu-mem-mb", type=int, default=None,
                        help="memory of one GPU: jobs that need more are flagged")
    parser.add_argument("--snakefile", type=Path, default=Path("Snakefile"))
    parser.add_argument("--benchmarks", action="store_true",
                        help="every job of the run (done or not), its requests beside what "
                             "Snakemake measured of the jobs that ran (their benchmark: files)")
    args = parser.parse_args(argv)

    # --cores only caps the threads a dry run shows: high enough to show what the rules ask
    cmd = [sys.executable, "-m", "snakemake", "-s", str(args.snakefile), "-n", "--verbose",
           "--cores", "256", *run_options(args), *(["--forceall"] if args.benchmarks else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print((proc.stdout + proc.stderr)[-4000:], file=sys.stderr)
        return proc.returncode
    jobs = parse_dry_run(proc.stdout + proc.stderr)
    # the profile's config entries first: --config given here overrides them, as in Snakemake
    config = profile_config(args.profile) + list(args.config)
    local = local_rules(args.snakefile, args.configfile, config)
    plans = summarise(jobs, local)
    grouped = [j["group"] for j in jobs if j.get("group") is not None]
    print(render(plans, shapes(args.configfile), args.gpu_mem_mb, args.profile,
                 (len(grouped), len(set(grouped)))))
    if args.benchmarks:
        print(render_measured(measured(jobs)))
        return 0
    from stsflow import plan_use

    wf = plan_use.workflow_of(args.configfile, config)
    print(plan_use.render_use(plan_use.job_uses(jobs, local, wf), jobs, len(wf.sfts)))
    unmaterialised = sum(p.jobs for p in plans if p.rule.startswith("materialize_"))
    if unmaterialised:
        print(f"{unmaterialised} dataset(s) not materialised yet: fine-tuning and evaluation "
              "jobs without a max_items bound keep the rules' fixed runtime. For runtimes "
              "from the data, materialise first:\n"
              f"  {materialise_command(args)}\nthen plan again.")
    return 0


def run_options(args) -> list[str]:
    """The snakemake options of the run being planned: its config file, profile and overrides."""
    out = []
    if args.configfile:
        out += ["--configfile", str(args.configfile)]
    if args.profile:
        out += ["--profile", args.profile]
    if args.config:
        out += ["--config", *args.config]
    return out


def materialise_command(args) -> str:
    """The snakemake command that materialises a plan's datasets, with its config and profile."""
    import shlex

    cmd = ["snakemake"]
    if args.snakefile != Path("Snakefile"):
        cmd += ["-s", str(args.snakefile)]
    return shlex.join(cmd + run_options(args) + ["--cores", "1", "--until", "materialize_sft",
                                                 "materialize_domain"])


@dataclass
class Measured:
    """One rule's requests beside Snakemake's measurements of the jobs that ran (benchmark
    files: wall seconds ``s`` and peak resident memory ``max_rss`` in MB)."""

    rule: str
    jobs: int = 0
    ran: int = 0
    requested_min: float = 0.0  # over the jobs that ran
    measured_min: float = 0.0
    requested_mb: int = 0  # the largest request of a job that ran
    peak_mb: float = 0.0  # the largest peak of a job that ran
    over: int = 0  # jobs that ran longer than they requested


def read_benchmark(path) -> dict | None:
    """The last row of a Snakemake benchmark file (a rerun appends), or None when the job has
    not run."""
    import csv

    p = Path(path)
    if not p.is_file():
        return None
    rows = list(csv.DictReader(p.read_text().splitlines(), delimiter="\t"))
    return rows[-1] if rows else None


def measured(jobs: list[dict]) -> list[Measured]:
    out: dict[str, Measured] = {}
    for job in jobs:
        if "benchmark" not in job:
            continue
        m = out.setdefault(job["rule"], Measured(job["rule"]))
        m.jobs += 1
        row = read_benchmark(job["benchmark"])
        if row is None:
            continue
        res = job["resources"]
        minutes, req = float(row["s"]) / 60, float(res.get("runtime", 0) or 0)
        m.ran += 1
        m.requested_min += req
        m.measured_min += minutes
        m.requested_mb = max(m.requested_mb, int(res.get("mem_mb", 0) or 0))
        rss = row.get("max_rss", "NA")
        m.peak_mb = max(m.peak_mb, float(rss) if rss not in ("NA", "-", "") else 0.0)
        m.over += minutes > req > 0
    return sorted(out.values(), key=lambda m: m.rule)


def render_measured(rows: list[Measured]) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    table = Table(title="requested vs measured (benchmark files of the jobs that ran)")
    for col in ("rule", "jobs", "ran", "runtime req. (sum)", "measured (sum)", "ran over",
                "host mem req./job", "peak RSS/job"):
        table.add_column(col, justify="left" if col == "rule" else "right")
    for m in rows:
        table.add_row(m.rule, str(m.jobs), str(m.ran),
                      f"{m.requested_min:.0f} min" if m.ran else "-",
                      f"{m.measured_min:.1f} min" if m.ran else "-", str(m.over) if m.ran else "-",
                      f"{m.requested_mb / 1000:.0f} GB" if m.ran else "-",
                      f"{m.peak_mb / 1000:.1f} GB" if m.ran else "-")
    out = StringIO()
    console = Console(file=out, width=140, force_terminal=False)
    console.print(table)
    console.print("Requests are first attempts; a job that ran over its request was retried with "
                  "a longer one on a cluster. Peak RSS is Snakemake's measurement of the job's "
                  "process tree.")
    return out.getvalue()


def render(plans: list[RulePlan], shape_lines: list[str], gpu_mem_mb: int | None,
           profile: str | None, groups: tuple[int, int] = (0, 0)) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"stsflow plan ({'profile ' + profile if profile else 'no profile'})")
    for col in ("rule", "jobs", "where", "threads", "host mem/job", "GPU mem/job", "GPUs/job",
                "runtime req. (sum)", "GPU h req."):
        table.add_column(col, justify="left" if col in ("rule", "where") else "right")
    for p in plans:
        flag = " !" if gpu_mem_mb and p.gpu_mem_mb > gpu_mem_mb else ""
        if p.local:  # run by the Snakemake process: nothing is requested
            table.add_row(p.rule, str(p.jobs), "local", *["-"] * 6)
            continue
        table.add_row(p.rule, str(p.jobs), "cluster", "/".join(map(str, sorted(p.threads))),
                      f"{p.host_mb / 1000:.0f} GB" if p.host_mb else "-",
                      (f"{p.gpu_mem_mb / 1000:.0f} GB{flag}" if p.gpu_mem_mb else "-"),
                      str(p.gpus), f"{p.runtime_min / 60:.1f} h" if p.runtime_min else "-",
                      f"{p.gpu_hours:.1f}" if p.gpu_hours else "-")
    out = StringIO()
    console = Console(file=out, width=140, force_terminal=False)
    console.print(table)
    cluster = sum(p.jobs for p in plans if not p.local)
    local = sum(p.jobs for p in plans if p.local)
    gpu_h = sum(p.gpu_hours for p in plans)
    grouped = (f" ({groups[0]} of them in {groups[1]} group job(s), each run as one cluster "
               "job)") if groups[1] else ""
    console.print(f"{cluster} cluster job(s){grouped}, {local} local job(s) (run by the "
                  f"Snakemake process). GPU hours requested: {gpu_h:.1f} (requested wall time x "
                  "GPUs, first attempt: an upper bound of what the run uses).")
    for line in shape_lines:
        console.print(line)
    big = [p.rule for p in plans if gpu_mem_mb and p.gpu_mem_mb > gpu_mem_mb]
    if big:
        console.print(f"! needs more than {gpu_mem_mb / 1000:.0f} GB on one GPU: "
                      f"{', '.join(big)} (see stsflow/config/resources.py for the estimate)")
    return out.getvalue()
