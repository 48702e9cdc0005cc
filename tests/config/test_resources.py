"""Memory requests from the model (stsflow.config.resources, the rules' resources) and
`stsflow plan`: shapes against models built by transformers, requests through Snakemake's own
dry runs of the presets, the profile's overrides."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from stsflow.config import resources
from stsflow.config.facts import model_shape, params_of_config
from stsflow.plan import parse_dry_run
from test_presets import offline_env  # no hub, an empty HF cache

PRESETS = REPO / "stsflow" / "presets"


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2", "mistral"])
def test_parameter_count_of_a_config_matches_the_built_model(arch):
    """The count from config.json against the parameters of the model transformers builds from
    it (meta device): within 0.1 % (biases and extra norms are left out of the formula)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(arch, vocab_size=1000, hidden_size=256, intermediate_size=704,
                               num_hidden_layers=3, num_attention_heads=8,
                               num_key_value_heads=2, head_dim=32)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    built = sum(p.numel() for p in model.parameters())
    counted = params_of_config(cfg.to_dict())
    assert abs(counted - built) / built < 1e-3, (arch, counted, built)


def test_tied_embeddings_default_to_the_architecture_when_config_json_omits_them():
    """Gemma 2's config.json does not write tie_word_embeddings: its architecture ties them."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("gemma2", vocab_size=1000, hidden_size=256,
                               intermediate_size=704, num_hidden_layers=3,
                               num_attention_heads=8, num_key_value_heads=2, head_dim=32)
    with torch.device("meta"):
        built = sum(p.numel() for p in AutoModelForCausalLM.from_config(cfg).parameters())
    written = {k: v for k, v in cfg.to_dict().items() if k != "tie_word_embeddings"}
    assert abs(params_of_config(written) - built) / built < 1e-3
    assert params_of_config({**written, "tie_word_embeddings": False}) > built + 250_000


def test_shape_of_a_local_model_and_of_the_embedded_default(tiny, tiny_model_dir):
    model, _ = tiny
    shape, origin = model_shape({"source": {"local": {"path": str(tiny_model_dir)}}}, REPO)
    assert origin == "config.json"
    assert shape.n_params == sum(p.numel() for p in model.parameters())
    assert (shape.hidden_size, shape.n_layers, shape.vocab_size) == (
        model.config.hidden_size, model.config.num_hidden_layers, model.config.vocab_size)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    shape, origin = model_shape(cfg["models"]["smollm2-135m"], REPO)
    assert origin == "GGUF file" and shape.hidden_size == 576 and shape.n_layers == 30
    assert 134e6 < shape.n_params < 136e6  # SmolLM2-135M, tied embeddings
    assert shape.kv_dim == 3 * 64 and shape.vocab_size == 49152  # 3 key/value heads of 64


def test_shape_falls_back_to_the_config_and_is_none_without_it():
    hub = {"source": {"hf": {"id": "org/not-cached", "revision": "main"}}, "n_layers": 4}
    assert model_shape(hub, REPO) == (None, "")
    given = {**hub, "shape": {"n_params": 7e9, "hidden_size": 4096, "vocab_size": 32000}}
    shape, origin = model_shape(given, REPO)
    assert origin == "shape" and shape == resources.Shape(7_000_000_000, 4096, 4, 32000)


def test_shape_of_a_hub_model_from_the_cache_after_fetch_model(tmp_path, tiny, tiny_model_dir,
                                                               monkeypatch):
    """Once fetch_model has put config.json into the hub cache, the model's own config wins
    over the config's shape."""
    from huggingface_hub import constants
    from conftest import cache_repo

    model, _ = tiny
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cache_repo(tmp_path, "org/tiny", {"config.json": tiny_model_dir / "config.json"})
    given = {"source": {"hf": {"id": "org/tiny", "revision": "main"}}, "n_layers": 40,
             "shape": {"n_params": 7e9, "hidden_size": 4096, "vocab_size": 32000}}
    shape, origin = model_shape(given, REPO)
    assert origin == "config.json"
    assert shape.n_params == sum(p.numel() for p in model.parameters())
    assert shape.kv_dim == 2 * 8  # 2 key/value heads of 32 / 4


def test_memory_grows_with_the_model_the_batch_and_the_step():
    small = resources.Shape(135_000_000, 576, 30, 49152)
    big = resources.Shape(7_615_616_512, 3584, 28, 152064)
    kw = dict(dtype="bfloat16", device_is_cpu=False, batch=8, tokens=2048)
    inf = {s: resources.need("inference", s, **kw) for s in (small, big)}
    assert inf[big].gpu_mb > 5 * inf[small].gpu_mb
    # bfloat16 weights alone: 15.2 GB for the 7.6B model
    assert inf[big].gpu_mb > 15_230 and inf[big].host_mb > 15_230 + 4_000
    assert resources.need("inference", big, **{**kw, "batch": 16}).gpu_mb > inf[big].gpu_mb
    no_logits = resources.need("inference", big, **kw, logits=False)
    assert no_logits.gpu_mb < inf[big].gpu_mb
    assert resources.need("extract", big, **kw).gpu_mb == no_logits.gpu_mb
    assert resources.need("extract", big, **kw, sae_width=57344).gpu_mb > no_logits.gpu_mb + 8000
    gen = resources.need("inference", big, **kw, new_tokens=2048)
    assert gen.gpu_mb > inf[big].gpu_mb
    lora = resources.need("adapter", big, **{**kw, "batch": 4})
    full = resources.need("full_weights", big, **{**kw, "batch": 4})
    # float32 training: LoRA holds 4 bytes per parameter, full fine-tuning 16
    assert 30_400 < lora.gpu_mb < full.gpu_mb and full.gpu_mb > 121_800
    ckpt = resources.need("adapter", big, **{**kw, "batch": 4}, checkpointing=True)
    assert ckpt.gpu_mb < lora.gpu_mb
    merged = resources.need("inference", big, **kw, merges_adapter=True)
    assert merged.host_mb >= inf[big].host_mb + 30_000  # the float32 base of the merge
    cpu = resources.need("inference", big, **{**kw, "device_is_cpu": True})
    # on a CPU the whole working set is in host memory, the weights counted once
    assert inf[big].gpu_mb + 4_000 <= cpu.host_mb < inf[big].gpu_mb + inf[big].host_mb
    gqa = resources.Shape(big.n_params, big.hidden_size, big.n_layers, big.vocab_size, kv_dim=512)
    assert resources.need("inference", gqa, **kw, new_tokens=2048).gpu_mb < gen.gpu_mb
    # a LoRA run saves its adapter: no float32 copy of the model on the host
    assert lora.host_mb < full.host_mb and lora.host_mb == inf[big].host_mb
    trains = resources.need("sae", big, **kw, sae_width=65536, trains_sae=True)
    reads = resources.need("sae", big, **kw, sae_width=65536)
    assert trains.gpu_mb > reads.gpu_mb > inf[big].gpu_mb
    for n in (inf[big], lora, full, gen):
        assert n.gpu_mb % 1000 == 0 and n.host_mb % 1000 == 0
    with pytest.raises(ValueError, match="unknown step"):
        resources.need("train", big, **kw)


def test_sharded_full_finetuning_memory_per_gpu():
    """FSDP over 8 GPUs (Qwen2.5-7B shape): each GPU holds 1/8 of the 16 bytes per parameter,
    plus, whole in float32 with their gradients, the embedding and LM head (152,064 x 3,584
    each, counted untied) and two blocks; every rank's process loads the model on the host."""
    big = resources.Shape(7_615_616_512, 3584, 28, 152064)
    kw = dict(dtype="bfloat16", device_is_cpu=False, batch=4, tokens=2048, checkpointing=True)
    one = resources.need("full_weights", big, **kw)
    eight = resources.need("full_weights", big, **kw, shards=8)
    root = 2 * 152064 * 3584
    at_least = 16 * 7_615_616_512 / 8 + 8 * (root + 2 * (7_615_616_512 - root) / 28)
    # figures carry 10 % headroom, rounded up to the GB; the micro-batch's activations are the
    # same on each GPU as on one, so the two differ by the sharded state alone
    assert eight.gpu_mb >= 1.1 * at_least / 1e6
    saved = 1.1 * (16 * 7_615_616_512 - at_least) / 1e6
    assert abs((one.gpu_mb - eight.gpu_mb) - saved) <= 2_000
    assert eight.gpu_mb < one.gpu_mb / 2.5 and one.gpu_mb > 121_800
    assert eight.host_mb > 8 * 15_230  # 8 processes, each with the bfloat16 weights
    cpu = resources.need("full_weights", big, **{**kw, "device_is_cpu": True}, shards=2)
    assert cpu.host_mb >= 2 * eight.gpu_mb  # gloo ranks: each working set on the host


def dry_run_jobs(tmp_path, config: dict, *extra: str) -> list[dict]:
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile",
         str(path), "-n", "--verbose", "--cores", "8", *extra],
        cwd=tmp_path, env=offline_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return parse_dry_run(proc.stdout + proc.stderr)


def requests(jobs, rule, key="mem_mb"):
    return {int(j["resources"][key]) for j in jobs if j["rule"] == rule}


def test_rules_request_the_memory_the_model_needs(tmp_path):
    """Through Snakemake: the Qwen preset with LoRA fine-tuning requests, per job, what
    resources.need computes for its step; tuned LoRA evaluations add the merge; without a shape
    the fixed requests stay; a profile's set-resources overrides."""
    cfg = yaml.safe_load((PRESETS / "qwen2.5-7b-instruct.yaml").read_text())
    cfg["finetune"].update(enabled=True, methods=["lora"], processes=1)
    m = cfg["models"]["qwen2.5-7b-instruct"]
    shape = resources.Shape(m["shape"]["n_params"], m["shape"]["hidden_size"], m["n_layers"],
                            m["shape"]["vocab_size"], m["shape"]["kv_dim"])
    kw = dict(dtype="bfloat16", device_is_cpu=False, tokens=m["max_length"])
    jobs = dry_run_jobs(tmp_path, cfg)
    base = resources.need("inference", shape, batch=cfg["evaluate"]["batch_size"],
                          new_tokens=cfg["evaluate"]["max_new_tokens"], **kw)
    tuned = resources.need("inference", shape, batch=cfg["evaluate"]["batch_size"],
                           new_tokens=cfg["evaluate"]["max_new_tokens"], merges_adapter=True,
                           **kw)
    assert requests(jobs, "evaluate_base") == {base.host_mb}
    assert requests(jobs, "evaluate_base", "gpu_mem_mb") == {base.gpu_mb}
    assert requests(jobs, "evaluate_tuned") == {tuned.host_mb} and tuned.host_mb > base.host_mb
    ft = resources.need("adapter", shape, **{**kw, "tokens": cfg["finetune"]["max_length"]},
                        batch=cfg["finetune"]["micro_batch_size"], checkpointing=True)
    assert requests(jobs, "finetune") == {ft.host_mb}
    assert requests(jobs, "finetune", "gpu_mem_mb") == {ft.gpu_mb}
    extract = requests(jobs, "extract")
    plain = resources.need("extract", shape, batch=m["batch_size"], **kw)  # SAE width unknown
    assert plain.host_mb in extract and len(extract) == 2  # the tuned runs merge an adapter

    del m["shape"]
    fixed = dry_run_jobs(tmp_path, cfg)
    assert requests(fixed, "extract") == {8000} and requests(fixed, "finetune") == {16000}
    assert requests(fixed, "extract", "gpu_mem_mb") == {0}

    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump(
        {"set-resources": {"extract": {"mem_mb": 123456}}}))
    cfg["models"]["qwen2.5-7b-instruct"]["shape"] = {"n_params": shape.n_params,
                                                      "hidden_size": shape.hidden_size,
                                                      "vocab_size": shape.vocab_size,
                                                      "kv_dim": shape.kv_dim}
    over = dry_run_jobs(tmp_path, cfg, "--profile", str(profile))
    assert requests(over, "extract") == {123456}
    assert requests(over, "evaluate_base") == {base.host_mb}


def test_plan_prints_jobs_resources_and_gpu_hours(tmp_path):
    """`stsflow plan` on the Qwen preset under the SLURM profile: the cluster jobs with their
    requests, the local ones, the GPU hours of the requested wall time, the GPUs too small."""
    cfg = yaml.safe_load((PRESETS / "qwen2.5-7b-instruct.yaml").read_text())
    cfg["finetune"].update(enabled=True, methods=["lora"], processes=1)
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "stsflow.cli", "plan", "--snakefile", str(REPO / "Snakefile"),
         "--configfile", str(path), "--profile", str(REPO / "profiles" / "slurm"),
         "--gpu-mem-mb", "30000"],
        cwd=tmp_path, env=offline_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    requests = out.split("estimated use")[0]  # the table of requests, by rule
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^│ (\w+)\s+│.*$", requests, re.M)}
    counts = {r: int(re.search(r"│\s+(\d+) │", row).group(1)) for r, row in rows.items()}
    assert counts["extract"] == 35 and counts["evaluate_tuned"] == 42 and counts["sts"] == 252
    assert "│ cluster │" in rows["extract"] and "│ local " in rows["sts"]
    assert "│ local " in rows["fetch_model"]
    # requested wall time, one GPU each: on an H100 a 7.6B model's extraction of 20,000 tokens,
    # its gradients and its SAE's quality pass are seconds of compute plus loading (15 GB at
    # 0.5 GB/s) and start, about 150 s, twice that with the margin: the ten-minute floor.
    # Fine-tuning and evaluation keep the rules' fixed 4 h and 2 h: their data is not
    # materialised yet (the plan says so). The feature cards (the LM head over a few decoder
    # rows, one job per layer and seed) are loading and start too.
    hours = {"prepare_sae": 1 / 6, "extract": 35 / 6, "gradients": 15 / 6, "finetune": 3 * 4,
             "evaluate_base": 14 * 2, "evaluate_tuned": 42 * 2, "cards": 3 / 6}
    assert counts["cards"] == 3
    assert f"GPU hours requested: {sum(hours.values()):.1f}" in out
    cluster = sum(counts[r] for r in hours)
    assert f"{cluster} cluster job(s), {sum(counts.values()) - cluster} local job(s)" in out
    assert "7.62B parameters" in out and "(from shape)" in out
    assert re.search(r"needs more than 30 GB on one GPU: .*evaluate_base", out)
    assert "GB !" in rows["evaluate_base"] and "!" not in rows["extract"]
    assert "15 dataset(s) not materialised yet" in out
    assert f"snakemake -s {REPO / 'Snakefile'} --configfile {path} --profile " in out
    assert "--cores 1 --until materialize_sft materialize_domain" in out


def test_plan_reads_where_the_downloads_run_from_the_profile(tmp_path):
    """A profile that sends the hub downloads to the cluster (`config: [hub_downloads=cluster]`)
    shows them as cluster jobs in the plan."""
    profile = tmp_path / "online"
    profile.mkdir()
    cfg = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    cfg["config"] = ["hub_downloads=cluster"]
    (profile / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "stsflow.cli", "plan", "--snakefile", str(REPO / "Snakefile"),
         "--configfile", str(PRESETS / "llama3-8b-instruct.yaml"), "--profile", str(profile)],
        cwd=tmp_path, env=offline_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^│ (\w+)\s+│.*$", proc.stdout, re.M)}
    assert "│ cluster │" in rows["fetch_model"] and "│ cluster │" in rows["fetch_sae"]
    assert "│ local " in rows["materialize_domain"]


# ----------------------------------------------------------------------------- runtime

SPEED = resources.Speed(gpu_tflops={"bfloat16": 1000.0, "float16": 1000.0, "float32": 50.0},
                        gpu_mfu=0.5, gpu_bandwidth_gbs=2000.0, cpu_gflops=40.0,
                        launch_ms_per_layer=0.5, margin=2.0)


def test_work_counts_the_flops_of_each_step():
    """FLOPs per token: a forward 2n (stopped after a layer: its share of the blocks), LoRA and
    the gradients 4n, full fine-tuning 6n, checkpointing one more forward; an SAE 2·width·H to
    encode; training in float32 whatever the model's dtype."""
    s = resources.Shape(1_000_000_000, 1000, 10, 50_000)
    t = 1000
    assert resources.work("adapter", s, dtype="bfloat16", tokens=t).flops == 4e12
    assert resources.work("adapter", s, dtype="bfloat16", tokens=t).dtype == "float32"
    assert resources.work("full_weights", s, dtype="bfloat16", tokens=t).flops == 6e12
    assert resources.work("full_weights", s, dtype="bfloat16", tokens=t, checkpointing=True).flops == 8e12
    assert resources.work("gradients", s, dtype="bfloat16", tokens=t).dtype == "bfloat16"
    ex = resources.work("extract", s, dtype="bfloat16", tokens=t, layer=4, sae_width=8000)
    assert ex.flops == pytest.approx(t * (2e9 * 5 / 10 + 2 * 8000 * 1000))
    sae = resources.work("sae", s, dtype="bfloat16", tokens=t, layer=4, sae_width=8000,
                         eval_tokens=100)
    assert sae.flops == pytest.approx(t * (1e9 + 6 * 2 * 8000 * 1000) + 3 * 100 * 2e9)
    pretrained = resources.work("sae", s, dtype="bfloat16", tokens=0, eval_tokens=100)
    assert pretrained.flops == pytest.approx(3 * 100 * 2e9)
    # 16 items generating 100 tokens after 50-token prompts, 8 at a time: two prefills, then
    # 200 decoding steps; their calls add to the items' own (here 16 teacher-forced queries)
    gen = resources.work("inference", s, dtype="bfloat16", tokens=0, calls=16, gen_items=16,
                         batch=8, new_tokens=100, context=50)
    assert gen.flops == pytest.approx(16 * 150 * 2e9) and gen.decode_steps == 2 * 100
    assert gen.calls == 16 + 2
    # per step: the bfloat16 weights and half the KV cache (2 x layers x batch x tokens x width)
    assert gen.decode_bytes == pytest.approx(2e9 + 2 * 10 * 8 * 150 * 1000 * 2 / 2)
    tuned = resources.work("inference", s, dtype="bfloat16", tokens=t, float32_weights=True)
    assert tuned.load_bytes == 4e9
    assert resources.work("inference", s, dtype="bfloat16", tokens=t).load_bytes == 2e9
    with pytest.raises(ValueError, match="unknown step"):
        resources.work("train", s, dtype="bfloat16", tokens=t)


def test_seconds_and_the_request_from_the_work():
    """GPU: compute over peak x MFU, each decoding step the bytes it streams over the bandwidth,
    the launch floor of sequential calls; CPU: the achieved rate per thread; then the margin,
    five-minute steps, ten minutes at least, times the attempt."""
    s = resources.Shape(1_000_000_000, 1000, 10, 50_000)
    load = 2e9 / resources.LOAD_BPS + resources.START_S
    w = resources.work("inference", s, dtype="bfloat16", tokens=1_000_000)
    assert resources.seconds(w, s, SPEED, device_is_cpu=False) == pytest.approx(
        load + 2e15 / (1000e12 * 0.5))
    cpu = resources.seconds(w, s, SPEED, device_is_cpu=True, threads=2)
    assert cpu == pytest.approx(load + 2e15 / (40e9 * 2))
    # many sequential calls over few tokens: the launch floor, not the FLOPs
    calls = resources.work("inference", s, dtype="bfloat16", tokens=1000, calls=100_000)
    assert resources.seconds(calls, s, SPEED, device_is_cpu=False) == pytest.approx(
        load + 100_000 * 10 * 0.5e-3)
    # 8 items, 1000 new tokens each, one batch: one prefill call, 1000 decoding steps, each
    # streaming 2 GB of weights and half a 1000-token KV cache (0.16 GB) at 2 TB/s: 1.08 ms,
    # below the 5 ms launch floor of ten blocks at 0.5 ms
    gen = resources.work("inference", s, dtype="bfloat16", tokens=0, gen_items=8, batch=8,
                         new_tokens=1000, context=0)
    assert resources.seconds(gen, s, SPEED, device_is_cpu=False) == pytest.approx(
        load + max(8 * 1000 * 2e9 / 500e12, 1 * 10 * 0.5e-3) + 1000 * max(2.16e9 / 2000e9, 5e-3))
    fast = resources.Speed(**{**SPEED.__dict__, "launch_ms_per_layer": 0.0})
    assert resources.seconds(gen, s, fast, device_is_cpu=False) == pytest.approx(
        load + 8 * 1000 * 2e9 / 500e12 + 1000 * 2.16e9 / 2000e9)
    partial = resources.Speed(**{**SPEED.__dict__, "gpu_tflops": {"bfloat16": 312.0}})
    with pytest.raises(ValueError, match="no float32 peak"):
        resources.seconds(resources.work("full_weights", s, dtype="bfloat16", tokens=1), s, partial,
                          device_is_cpu=False)
    # 124 s + 2e15 / 40e9 = 50,124 s; x 2 = 1,670.8 min: 1,675 requested
    assert resources.runtime_min(w, s, SPEED, device_is_cpu=True) == 1675
    assert resources.runtime_min(w, s, SPEED, device_is_cpu=True, attempt=3) == 3 * 1675
    small = resources.work("extract", s, dtype="bfloat16", tokens=10, layer=1)
    assert resources.runtime_min(small, s, SPEED, device_is_cpu=False) == 10
    full = resources.work("full_weights", s, dtype="bfloat16", tokens=1_000_000)
    assert (resources.runtime_min(full, s, SPEED, device_is_cpu=False)
            > resources.runtime_min(resources.work("adapter", s, dtype="bfloat16",
                                                   tokens=1_000_000), s, SPEED,
                                    device_is_cpu=False))


def test_text_size_counts_the_characters_of_every_text_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": "What is 2+2?", "options": ["3", "4", "five"], "answer_index": 1,
             "cot_content": "Add them."},
            {"question": "Ünïcode ✓", "options": ["ja", "nein"], "answer_index": 0,
             "cot_content": None}]
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    chars = sum(len(r["question"]) + sum(map(len, r["options"])) + len(r["cot_content"] or "")
                for r in rows)
    assert resources.text_size(path) == (2, chars)
    assert resources.text_size(tmp_path / "missing.parquet") is None
    assert resources.tokens_per_item(2, 50) == math.ceil(25 / resources.CHARS_PER_TOKEN) \
        + resources.ITEM_TOKENS


def test_runtime_requests_come_from_the_data_once_it_is_materialised(tmp_path):
    """Through Snakemake on the embedded default (`device: cpu`): before materialisation the
    fine-tuning and evaluation jobs keep the rules' fixed runtime and the extractions' come from
    the token budgets; once the data exists, each job's runtime is the estimate from its
    Parquet input, computed here directly; a profile's set-resources overrides it."""
    import pyarrow.parquet as pq

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["models"]["smollm2-135m"]["device"] = "cpu"
    cfg["throughput"] = {"margin": 10}
    before = dry_run_jobs(tmp_path, cfg)
    assert requests(before, "finetune", "runtime") == {240}
    assert requests(before, "evaluate_base", "runtime") == {120}
    shape, _ = model_shape(cfg["models"]["smollm2-135m"], REPO)
    n = shape.n_params

    def minutes(flops, calls=0, threads=1, weight_bytes=4, margin=10):
        """The request by hand: start, the weights at 0.5 GB/s, then the larger of 50 GFLOP/s a
        thread and 0.25 ms a block per call; the margin; five-minute steps, ten at least."""
        launch = calls * shape.n_layers * 0.25e-3
        sec = (resources.START_S + weight_bytes * n / resources.LOAD_BPS
               + max(flops / (50e9 * threads), launch))
        return max(10, math.ceil(sec * margin / 60 / 5) * 5)

    sts = cfg["sts"]
    layer, width = 12, cfg["models"]["smollm2-135m"]["layers"][12]["sae"]["train"]["width"]
    per_token = 2 * n * (layer + 1) / shape.n_layers + 2 * width * shape.hidden_size
    assert requests([j for j in before if j["wildcards"].get("kind") == "sft"], "extract",
                    "runtime") == {minutes(sts["sft_tokens"] * per_token)}

    # materialise (local, offline, seconds), then plan again
    path = tmp_path / "preset.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile",
         str(path), "--cores", "1", "--until", "materialize_sft", "materialize_domain"],
        cwd=tmp_path, env=offline_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    after = dry_run_jobs(tmp_path, cfg)

    def per_item(file, cap):
        table = pq.read_table(file).to_pylist()
        chars = sum(len(v) for row in table for v in row.values() if isinstance(v, str))
        chars += sum(len(x) for row in table for v in row.values() if isinstance(v, list)
                     for x in v if isinstance(x, str))
        return len(table), min(cap, math.ceil(chars / len(table) / 2.5) + 64)

    ft = cfg["finetune"]
    rows, per = per_item(tmp_path / "results/data/sft/math.parquet", ft["max_length"])
    assert requests(after, "finetune", "runtime") == {
        minutes(ft["epochs"] * rows * per * 4 * n, threads=2)}
    # evaluation: one teacher-forced pass over each item; calls: its query, its options (up to
    # 10, 8 a call: two) and its reference answer
    rows, per = per_item(tmp_path / "results/data/domain/law.test.parquet", 1024)
    want = minutes(rows * per * 2 * n, calls=4 * rows)
    for rule in ("evaluate_base", "evaluate_tuned"):
        law = [j for j in after if j["rule"] == rule and j["wildcards"]["domain"] == "law"]
        assert requests(law, rule, "runtime") == {want}
    # generation on top: each item's prompt (5 worked examples, its question) and 512 new
    # tokens, 8 items a batch: a prefill and 512 decoding steps per batch, each a call
    cfg["evaluate"] = {"metrics": ["generate", "option_loglik"], "max_new_tokens": 512}
    gen = dry_run_jobs(tmp_path, cfg)
    _, demo = per_item(tmp_path / "results/data/domain/law.demos.parquet", 1024)
    context = 5 * demo + per
    batches = math.ceil(rows / 8)
    law = [j for j in gen if j["rule"] == "evaluate_base" and j["wildcards"]["domain"] == "law"]
    assert requests(law, "evaluate_base", "runtime") == {
        minutes(rows * per * 2 * n + rows * (context + 512) * 2 * n,
                calls=3 * rows + batches + batches * 512)}

    # max_items and max_steps bound fine-tuning as train counts its steps (5 steps of 8);
    # a bfloat16 model's tuned evaluations load float32 weights, its base evaluations its own
    # (a margin of 1000 makes the 0.5 s between them minutes apart)
    cfg["evaluate"] = {"metrics": ["nll", "option_loglik"]}
    cfg["finetune"].update(max_items=100, max_steps=5)
    cfg["models"]["smollm2-135m"]["dtype"] = "bfloat16"
    cfg["throughput"] = {"margin": 1000}
    bounded = dry_run_jobs(tmp_path, cfg)
    rows, per = per_item(tmp_path / "results/data/sft/math.parquet", ft["max_length"])
    assert requests(bounded, "finetune", "runtime") == {
        minutes(5 * 8 * per * 4 * n, threads=2, weight_bytes=2, margin=1000)}
    rows, per = per_item(tmp_path / "results/data/domain/law.test.parquet", 1024)
    got = {}
    for rule, weight_bytes in (("evaluate_base", 2), ("evaluate_tuned", 4)):
        law = [j for j in bounded if j["rule"] == rule and j["wildcards"]["domain"] == "law"]
        got[rule] = requests(law, rule, "runtime")
        assert got[rule] == {minutes(rows * per * 2 * n, calls=4 * rows,
                                     weight_bytes=weight_bytes, margin=1000)}
    assert got["evaluate_tuned"] != got["evaluate_base"]

    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump(
        {"set-resources": {"finetune": {"runtime": 7}}}))
    over = dry_run_jobs(tmp_path, cfg, "--profile", str(profile))
    assert requests(over, "finetune", "runtime") == {7}


def test_a_gpu_peak_given_for_some_dtypes_only_is_refused():
    """Fine-tuning runs in float32: a peak given for bfloat16 alone would plan it at bfloat16
    speed, so the config must give all three (the field named in the error)."""
    from stsflow import config as stsconfig
    from stsflow.config.schema import ConfigError

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["throughput"] = {"gpu_tflops": {"bfloat16": 312}}
    with pytest.raises(ConfigError, match=r"throughput\.gpu_tflops\.float32: missing\. Fix"):
        stsconfig.validate(cfg, base_dir=REPO)
    cfg["throughput"] = {"gpu_tflops": {"bfloat16": 312, "float16": 312, "float32": 19.5},
                         "gpu_mfu": 0.4}
    got = stsconfig.validate(cfg, base_dir=REPO)["throughput"]
    assert got["gpu_tflops"]["float32"] == 19.5 and got["margin"] == 2
