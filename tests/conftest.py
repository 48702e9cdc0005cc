"""Shared fixtures: a tiny random-weight causal LM with a character tokenizer and a ChatML
template, a tiny random SAE, and tiny corpora. Everything is built offline in seconds."""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are tiny.<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + list(string.printable))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>",
                                  eos_token="<|im_end|>",
                                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.chat_template = CHATML
    return tok


def make_model(vocab_size: int, seed: int = 0, n_layers: int = 3):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=2048, pad_token_id=0, bos_token_id=1, eos_token_id=3)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny model directory (usable as a `local` model source)."""
    d = tmp_path_factory.mktemp("tiny_model")
    tok = make_tokenizer()
    model = make_model(len(tok))
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return model, tok


def saved_lora(model_dir: Path, where: Path, seed: int = 5) -> tuple[Path, Path]:
    """A LoRA adapter of the model at ``model_dir`` with non-zero B (a trained adapter's shape),
    saved as PEFT saves it (``where/adapter``), and the same adapter merged and saved as a whole
    model (``where/merged``)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                            target_modules=["q_proj", "v_proj", "down_proj"]))
    adapter, merged = Path(where) / "adapter", Path(where) / "merged"
    peft.save_pretrained(adapter)
    peft.merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(merged)
    return adapter, merged


def make_sae(d_in: int = 32, width: int = 64, k: int = 6, seed: int = 0):
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=width, k=k))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.3)
    return sae.eval()


def sft_records(n: int = 12) -> list[dict]:
    return [{"id": f"m{i}", "question": f"What is {i} plus {i + 2}?",
             "solution": f"{i} + {i + 2} = {2 * i + 2}. The answer is {2 * i + 2}.",
             "answer": str(2 * i + 2)} for i in range(n)]


def domain_records(name: str, n: int, offset: int = 0) -> list[dict]:
    out = []
    for i in range(offset, offset + n):
        out.append({"question_id": 1000 * len(name) + i, "question": f"{name} question {i}?",
                    "options": [f"opt {name} {j}" for j in range(4)], "answer": "ABCD"[i % 4],
                    "answer_index": i % 4,
                    "cot_content": f"A: Let's think step by step. It is {'ABCD'[i % 4]}. "
                                   f"The answer is ({'ABCD'[i % 4]}).",
                    "category": name, "src": "test"})
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def saved_sae(directory, *, d_in=32, width=64, k=6, hook="blocks.1.hook_resid_post",
              model_name=None, seed=0):
    """A random TopK SAE saved by sae-lens, with the hook (and model) it declares."""
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    meta = {k_: v for k_, v in (("hook_name", hook), ("model_name", model_name)) if v}
    torch.manual_seed(seed)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=width, k=k, metadata=SAEMetadata(**meta)))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.3)
    sae.save_model(str(directory))
    return directory


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_repo(cache: Path, repo: str, files: dict[str, Path | bytes], commit: str = COMMIT,
               ref: str = "main") -> Path:
    """A repository in a hub cache: blobs, the snapshot of ``commit`` (links to the blobs) and
    ``refs/<ref>`` naming it."""
    import hashlib

    root = cache / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / commit
    for rel, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        (snap / rel).symlink_to(blob)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    return snap


def hidden_states(model, **inputs):
    """``output_hidden_states`` of one forward, run on a copy of ``model``: transformers installs
    its output-capturing forward hooks on every block (and attention) the first time a model is
    asked for hidden states, and never removes them, so a reference computed on a shared test
    model would leave them there for every later test (inert while no capture is asked for, but
    hooks a job did not place; the shared-model guard below would see them)."""
    import copy

    with torch.no_grad():
        return copy.deepcopy(model)(**inputs, output_hidden_states=True).hidden_states


def dense_query_features(model, sae, prefix, query, layer):
    """SAE features of the query tokens from one full forward pass of prefix + query: no cache,
    no early stop, the layer read from output_hidden_states (independent of the extraction's
    hook), float64."""
    with torch.no_grad():
        hs = hidden_states(model, input_ids=torch.tensor([prefix + query]))
        return sae.encode(hs[layer + 1][0, len(prefix):]).double().numpy()


def forward_hooks(model) -> set:
    """Every forward hook and forward pre-hook on the model's modules: (module, kind, id)."""
    return {(name, kind, key) for name, module in model.named_modules()
            for kind in ("_forward_hooks", "_forward_pre_hooks") for key in getattr(module, kind)}


@pytest.fixture(autouse=True)
def _shared_model_keeps_no_hooks(request):
    """A test that uses the shared tiny model leaves on it no forward hook it did not find:
    a leaked hook would change the residuals every later test reads."""
    if "tiny" not in request.fixturenames:
        yield
        return
    model = request.getfixturevalue("tiny")[0]
    before = forward_hooks(model)
    yield
    left = forward_hooks(model) - before
    assert not left, f"forward hooks left on the shared tiny model: {sorted(left)[:6]}"


class HookCensus:
    """Every forward hook and pre-hook registered on any module while the census runs (a job's
    models are loaded inside the job, so they are counted from their first hook); ``left()``:
    those still registered on their module. Holds the modules until the census ends."""

    KINDS = {"register_forward_hook": "_forward_hooks",
             "register_forward_pre_hook": "_forward_pre_hooks"}

    def __init__(self):
        self.registered: list[tuple] = []

    def __enter__(self):
        self._originals = {}
        for method, store in self.KINDS.items():
            original = getattr(torch.nn.Module, method)
            self._originals[method] = original

            def wrapped(module, *args, _original=original, _store=store, **kwargs):
                handle = _original(module, *args, **kwargs)
                self.registered.append((module, _store, handle.id))
                return handle

            setattr(torch.nn.Module, method, wrapped)
        return self

    def __exit__(self, *exc):
        for method, original in self._originals.items():
            setattr(torch.nn.Module, method, original)
        return False

    def left(self) -> list[str]:
        return [f"{type(m).__name__}.{store}[{key}]" for m, store, key in self.registered
                if key in getattr(m, store)]


def without_leaks(job, *args, **kwargs) -> int:
    """Run ``job`` (a job function, whose models are loaded inside it) under a ``HookCensus``;
    assert that it left no forward hook on any module; return how many it registered (a count
    above 0 shows the census watched a model run)."""
    with HookCensus() as census:
        job(*args, **kwargs)
    assert not census.left(), f"{job.__name__} left forward hooks behind: {census.left()}"
    return len(census.registered)


def direct_layer_sums(model, seg, records: list[dict], cut: int | None = None):
    """Reference for the layer means: every block's output (``LayerTap``) summed over the content
    tokens of each record's plain query (its first ``cut`` tokens), one uncached forward per
    record and layer, float64. Returns (sums (n_layers, d), token count)."""
    import numpy as np

    from stsflow.models.tap import LayerTap

    head = seg.head()
    sums = []
    for layer in range(model.config.num_hidden_layers):
        rows = []
        for rec in records:
            ids, counted = seg.query_parts(rec, "domain")
            ids, counted = list(ids)[:cut], list(counted)[:cut]
            with torch.no_grad():
                z = LayerTap(model, layer).run(model, input_ids=torch.tensor([head + ids]))
            rows.append(z[0, len(head):].double().numpy()[np.asarray(counted, dtype=bool)])
        sums.append(np.concatenate(rows).sum(0))
    return np.stack(sums), int(sum(r.shape[0] for r in rows))
