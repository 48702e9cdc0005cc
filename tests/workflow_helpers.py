"""Helpers to run the workflow on a tiny project through the Snakemake CLI."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml
from conftest import REPO, domain_records, sft_records, write_jsonl

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def tiny_config(workdir: Path, model_dir: Path, domains=("law", "history", "physics"),
                layers=(1,), observed: bool = True, finetune: bool = False) -> dict:
    write_jsonl(workdir / "data" / "sft.jsonl", sft_records(12))
    cfg_domains = {}
    for i, name in enumerate(domains):
        write_jsonl(workdir / "data" / f"{name}.test.jsonl", domain_records(name, 5))
        write_jsonl(workdir / "data" / f"{name}.demos.jsonl", domain_records(name, 2, offset=50))
        cfg_domains[name] = {"test": {"local": {"path": f"data/{name}.test.jsonl"}},
                             "demos": {"local": {"path": f"data/{name}.demos.jsonl"}}}
    sae = {"train": {"width": 64, "k": 4, "tokens": 4096, "batch_tokens": 128,
                     "context_length": 64, "corpora": ["arith"]}}
    cfg = {
        "results": "results",
        "models": {"tiny": {"source": {"local": {"path": str(model_dir)}}, "batch_size": 4,
                            "layers": {layer: {"sae": sae} for layer in layers}}},
        "sft": {"arith": {"source": {"local": {"path": "data/sft.jsonl"}}}},
        "domains": cfg_domains,
        "sts": {"n_top": [5, 10], "t": 2, "m": 2, "sft_tokens": 2000, "domain_tokens": 1000,
                "seeds": [0], "feat_dtype": "float32"},
        "report": {"n_boot": 200, "n_perm": 200},
    }
    if finetune:
        cfg["finetune"] = {"enabled": True, "methods": ["lora"], "epochs": 1, "lr": 1e-3,
                           "batch_size": 4, "micro_batch_size": 2, "max_length": 128}
        cfg["evaluate"] = {"metrics": ["nll", "option_loglik"], "batch_size": 4, "n_boot": 200}
    if observed:
        cfg["observed"] = [{"model": "tiny", "sft": "arith", "metric": "given",
                            "deltas": {d: (-1.0) ** i * (i + 1) for i, d in enumerate(domains)}}]
    return cfg


def write_config(workdir: Path, cfg: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _command(workdir: Path, args, env: dict | None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               **(env or {}))
    cmd = SNAKEMAKE + ["-s", str(REPO / "Snakefile"), "--directory", str(workdir),
                       "--configfile", str(workdir / "config.yaml"), *args]
    return cmd, env


def snakemake_started(workdir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """Snakemake started and left running, in a process group of its own (with the jobs it
    runs): ``os.killpg(proc.pid, signal.SIGKILL)`` kills the workflow as ``kill -9`` would."""
    cmd, env = _command(workdir, args, env)
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def snakemake(workdir: Path, *args: str, timeout: int = 900, check: bool = True,
              env: dict | None = None):
    cmd, env = _command(workdir, args, env)
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def planned_jobs(workdir: Path, *args: str, env: dict | None = None) -> Counter:
    """Jobs a dry run would execute, counted per rule (``env``: extra environment variables)."""
    proc = snakemake(workdir, "-n", "--cores", "2", *args, env=env)
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return Counter()
    table = text.split("Job stats:")[1] if "Job stats:" in text else ""
    counts = Counter()
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if not m:
            if counts:
                break
            continue
        if m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def executed_jobs(proc) -> Counter:
    """Jobs a finished ``snakemake`` run executed (``proc``: its completed process), counted per
    rule: also those a checkpoint added after the run started, which no dry run shows."""
    text = proc.stdout + proc.stderr
    return Counter(m.group(1) for m in re.finditer(r"^(?:local)?(?:rule|checkpoint) (\w+):$",
                                                   text, re.M))


@dataclass(frozen=True)
class RuleView:
    """One rule as Snakemake parsed it: its conda environment and script (relative to rules/),
    whether it is a local rule, and its resource names."""

    name: str
    env: str | None
    script: str | None
    local: bool
    resources: frozenset


@functools.cache
def workflow_rules(overrides: str = "{}") -> dict[str, RuleView]:
    """Every rule of the workflow, read through Snakemake's API (not the rule files' text), for
    the embedded default config with ``overrides`` (JSON of top-level sections merged into it,
    e.g. to define the rule a setting adds), in a subprocess so that no test shares the parse's
    global state."""
    code = f"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1),
                      config_settings=ConfigSettings(configfiles=[Path("config.yaml")],
                                                     config=json.loads(sys.argv[1])),
                      storage_settings=StorageSettings(), snakefile=Path("Snakefile"),
                      workdir=Path.cwd())
    w = wf._workflow
    print(json.dumps([dict(name=r.name, env=r.conda_env, script=r.script,
                           local=r.name in w._localrules, resources=sorted(r.resources))
                      for r in w.rules]))
"""
    proc = subprocess.run([sys.executable, "-c", code, overrides], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    return {r["name"]: RuleView(r["name"], r["env"], r["script"], r["local"],
                                frozenset(r["resources"])) for r in rows}


# every rule the workflow can define: the default's, and the sharded fine-tuning rule that
# finetune.processes > 1 adds
ALL_RULES = json.dumps({"finetune": {"enabled": True, "methods": ["full", "lora"],
                                     "processes": 2}})


def gpu_rules() -> set[str]:
    """The rules that run a model or an SAE: those in the GPU environment (a rule derived with
    ``use rule ... with`` inherits its parent's); every other rule is a local rule on a
    cluster."""
    found = {name for name, r in workflow_rules(ALL_RULES).items()
             if r.env == "../envs/gpu.yaml"}
    assert {"extract", "encode", "gradients", "finetune", "evaluate_tuned"} <= found
    return found


def chromium() -> str:
    """Debian's Chromium (installed by .ci/run). Without it the browser tests are skipped, unless
    STSFLOW_REQUIRE_BROWSER is set (CI sets it: there a missing browser is a failure)."""
    import pytest

    from stsflow.report.browser import find_chromium

    exe = find_chromium()
    if exe is None:
        if os.environ.get("STSFLOW_REQUIRE_BROWSER"):
            pytest.fail("no Chromium on PATH: install Debian's `chromium` package")
        pytest.skip("no Chromium on PATH (apt-get install chromium); CI runs this test")
    return exe


def render_in_browser(page: Path, screenshot: Path) -> tuple[str, list[str]]:
    """(DOM after the scripts ran, console messages) of a page in headless Chromium, and its
    screenshot (stsflow.report.browser)."""
    from stsflow.report.browser import render

    dom, console = render(page, screenshot, exe=chromium())
    assert screenshot.stat().st_size > 0
    return dom, console


def report_sections(dom: str) -> dict[str, dict]:
    """Per h2 section of a rendered report (by id): its heading, the characters of text, the
    images and table rows under it until the next h2; and the contents' link targets."""
    from html.parser import HTMLParser

    class Sections(HTMLParser):
        def __init__(self):
            super().__init__()
            self.out, self.links, self.cur, self.in_h2 = {}, [], None, False

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "h2":
                self.cur, self.in_h2 = a.get("id"), True
                self.out[self.cur] = {"title": "", "text": 0, "img": 0, "rows": 0}
            elif tag == "a" and self.cur is None and a.get("href", "").startswith("#"):
                self.links.append(a["href"][1:])
            elif self.cur and tag == "img":
                self.out[self.cur]["img"] += 1
            elif self.cur and tag == "tr":
                self.out[self.cur]["rows"] += 1

        def handle_endtag(self, tag):
            if tag == "h2":
                self.in_h2 = False

        def handle_data(self, data):
            if self.cur and self.in_h2:
                self.out[self.cur]["title"] += data
            elif self.cur:
                self.out[self.cur]["text"] += len(data.strip())

    p = Sections()
    p.feed(dom)
    return {"sections": p.out, "links": p.links}
