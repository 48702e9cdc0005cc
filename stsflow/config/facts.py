"""Facts about what a config names, read without loading weights: a model's config (hub, local or
GGUF), its module names (cached on disk), the sae-lens registry, and what an SAE's config says
about its hook, width and model. The checks in ``checks`` compare these with the config."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import re
from pathlib import Path

import yaml


def package_file(spec: dict) -> Path:
    """Path of a file shipped inside an installed Python package (located, never imported)."""
    found = importlib.util.find_spec(spec["package"])
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"package {spec['package']!r} is not installed")
    return Path(list(found.submodule_search_locations)[0]) / spec["file"]


@functools.lru_cache(maxsize=1)
def _registry_yaml() -> dict | None:
    found = importlib.util.find_spec("sae_lens")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / "pretrained_saes.yaml"
    if not path.exists():
        return None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(), Loader=loader) or {}


def sae_registry() -> dict | None:
    """The installed sae-lens registry (release -> [sae ids]), read from its YAML without importing
    sae-lens (slow); None when sae-lens is not installed."""
    data = _registry_yaml()
    if data is None:
        return None
    return {rel: [str(s["id"]) for s in (spec or {}).get("saes", [])] for rel, spec in data.items()}


def registry_model(release: str) -> str | None:
    """The model a registry release declares (its ``model`` field, a TransformerLens or hub name).
    The registry YAML does not carry SAE widths or hooks: those are read from the SAE's own config
    when ``prepare_sae`` fetches it."""
    return ((_registry_yaml() or {}).get(release) or {}).get("model")


def registry_id_facts(release: str, sae_id: str, hidden_size: int | None) -> dict:
    """Layer and width of a registry SAE read from its release and id alone (no download, no
    sae-lens import), for the naming schemes of the residual-stream releases the presets use;
    None where the id does not say (the prepare_sae job checks the SAE's own config anyway).

    * Llama Scope ``l25r_8x``: layer 25, ``r`` residual (``a``/``m``: attention/MLP outputs),
      width 8 × hidden size;
    * Gemma Scope ``layer_31/width_131k/...`` in a ``-res`` release: width "131k" is 2^17 (the
      ids round powers of two to thousands);
    * andyrdt ``resid_post_layer_23_trainer_1``; ids that are hook names ``blocks.L.hook_resid_post``.
    """
    layer = width = None
    if m := re.fullmatch(r"l(\d+)([ram])_(\d+)x", sae_id):
        if m.group(2) == "r":
            layer = int(m.group(1))
            width = int(m.group(3)) * hidden_size if hidden_size else None
    elif m := re.search(r"(?:^|/)layer_(\d+)(?:/|_|$)", sae_id):
        if re.search(r"-res(?:-|$)", release) and "transcoder" not in sae_id:
            layer = int(m.group(1))
        if w := re.search(r"width_(\d+)([km])", sae_id):
            approx = int(w.group(1)) * (1000 if w.group(2) == "k" else 1000 ** 2)
            width = 2 ** round(math.log2(approx))
    elif m := re.search(r"resid_post_layer_(\d+)", sae_id):
        layer = int(m.group(1))
    elif (found := resid_layer(sae_id.split("__")[0])) is not None:  # hook name (+ __trainer)
        layer = found
    return {"layer": layer, "width": width}


@functools.lru_cache(maxsize=8)
def gguf_fields(path: str) -> dict:
    """Scalar header fields of a GGUF file (read once per process: the reader maps the file)."""
    from gguf import GGUFReader, GGUFValueType

    out = {}
    for key, field in GGUFReader(path).fields.items():
        if field.types and field.types[0] not in (GGUFValueType.ARRAY,):
            part = field.parts[-1]
            out[key] = (bytes(part).decode() if field.types[0] == GGUFValueType.STRING
                        else part[0].item())
    return out


def model_facts(model: dict, base_dir: Path) -> tuple[dict | None, str]:
    """``{n_layers, hidden_size}`` read offline from the model (local config.json or GGUF header)
    and where they came from; None for hub models and unreadable files."""
    src = model["source"]
    try:
        if "gguf_package" in src:
            fields = gguf_fields(str(package_file(src["gguf_package"])))
            arch = fields["general.architecture"]
            return {"n_layers": int(fields[f"{arch}.block_count"]),
                    "hidden_size": int(fields[f"{arch}.embedding_length"])}, "GGUF header"
        if "local" in src:
            cfg = json.loads((base_dir / src["local"]["path"] / "config.json").read_text())
            cfg = cfg.get("text_config", cfg)
            return {"n_layers": int(cfg["num_hidden_layers"]),
                    "hidden_size": int(cfg["hidden_size"])}, "config.json"
    except Exception:  # missing files are reported elsewhere
        pass
    return None, ""


def params_of_config(cfg: dict) -> int:
    """Parameters of a decoder-only transformer with a gated MLP (Llama, Qwen2, Gemma 2, Mistral)
    from its config.json: embeddings (and an untied LM head), attention with grouped key/value
    heads, the three MLP projections, norms. Biases (Qwen2's q/k/v) are left out: under 0.01 %."""
    tied = cfg.get("tie_word_embeddings")
    if tied is None:  # not written out: the architecture's default (Gemma 2 ties, Llama does not)
        tied = _default_tied(cfg.get("model_type"))
    cfg = cfg.get("text_config", cfg)
    h, n_layers, vocab = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    heads = cfg["num_attention_heads"]
    attn = 2 * h * heads * _head_dim(cfg) + 2 * h * kv_dim_of_config(cfg)
    mlp = 3 * h * cfg["intermediate_size"]
    embed = vocab * h * (1 if tied else 2)
    return int(n_layers * (attn + mlp + 2 * h) + embed + h)


def _head_dim(cfg: dict) -> int:
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def kv_dim_of_config(cfg: dict) -> int:
    """Key/value width of a layer: key/value heads (grouped-query attention) x head size."""
    cfg = cfg.get("text_config", cfg)
    return (cfg.get("num_key_value_heads") or cfg["num_attention_heads"]) * _head_dim(cfg)


@functools.lru_cache(maxsize=8)
def _default_tied(model_type: str | None) -> bool:
    try:
        from transformers import AutoConfig

        return bool(AutoConfig.for_model(model_type).tie_word_embeddings)
    except Exception:  # unknown type: count an untied head (the larger figure)
        return False


@functools.lru_cache(maxsize=8)
def _gguf_params(path: str) -> int:
    from gguf import GGUFReader

    return sum(int(t.n_elements) for t in GGUFReader(path).tensors)


def _gguf_vocab(path: str, fields: dict, arch: str) -> int:
    """The vocabulary of a GGUF model: its header field, which is optional, else the rows of the
    token embedding."""
    if f"{arch}.vocab_size" in fields:
        return int(fields[f"{arch}.vocab_size"])
    from gguf import GGUFReader

    embd = next(t for t in GGUFReader(path).tensors if t.name == "token_embd.weight")
    return int(max(int(d) for d in embd.shape))


def _cached_hub_config(hf: dict) -> dict | None:
    """A hub model's config.json if the hub cache holds it (after fetch_model); no network."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(hf["id"], "config.json", revision=hf["revision"])
    except Exception:
        return None
    return json.loads(Path(path).read_text()) if isinstance(path, str) else None


def model_shape(model: dict, base_dir: Path):
    """(``resources.Shape``, where it came from) of a model, offline: the GGUF file's tensors and
    header, a local or cached hub config.json, else the config's ``shape`` (with ``n_layers``);
    (None, "") when none says. Plans the memory of its jobs (``stsflow.config.resources``)."""
    from stsflow.config.resources import Shape

    src = model["source"]
    try:
        if "gguf_package" in src:
            path = str(package_file(src["gguf_package"]))
            fields = gguf_fields(path)
            arch = fields["general.architecture"]
            hidden, heads = int(fields[f"{arch}.embedding_length"]), \
                int(fields[f"{arch}.attention.head_count"])
            kv_heads = int(fields.get(f"{arch}.attention.head_count_kv", heads))
            head_dim = int(fields.get(f"{arch}.attention.key_length", hidden // heads))
            return Shape(_gguf_params(path), hidden, int(fields[f"{arch}.block_count"]),
                         _gguf_vocab(path, fields, arch), kv_heads * head_dim), "GGUF file"
        cfg = (json.loads((base_dir / src["local"]["path"] / "config.json").read_text())
               if "local" in src else _cached_hub_config(src["hf"]))
        if cfg is not None:
            text = cfg.get("text_config", cfg)
            return Shape(params_of_config(cfg), int(text["hidden_size"]),
                         int(text["num_hidden_layers"]), int(text["vocab_size"]),
                         kv_dim_of_config(cfg)), "config.json"
    except Exception:  # unreadable files are reported elsewhere
        pass
    given = model.get("shape")
    if given and model.get("n_layers"):
        return Shape(int(given["n_params"]), int(given["hidden_size"]), int(model["n_layers"]),
                     int(given["vocab_size"]), given.get("kv_dim")), "shape"
    return None, ""


def model_n_layers(name: str, model: dict, base_dir: Path) -> tuple[int | None, str]:
    """Layer count from the model itself where reachable offline, else from ``n_layers``."""
    facts, origin = model_facts(model, base_dir)
    if facts:
        return facts["n_layers"], origin
    return model.get("n_layers"), "n_layers"


def _module_cache_key(src: dict, base_dir: Path) -> str | None:
    """A key that changes whenever the model's architecture could: the GGUF file's path, size
    and mtime, the local config.json's bytes, or the hub id and revision; plus the transformers
    version, which builds the modules."""
    import hashlib
    import json
    from importlib.metadata import version

    tf_version = version("transformers")  # not an import of transformers: every parse pays it

    try:
        if "gguf_package" in src:
            f = package_file(src["gguf_package"])
            ident = [str(f), f.stat().st_size, f.stat().st_mtime_ns]
        elif "local" in src:
            ident = [(base_dir / src["local"]["path"] / "config.json").read_text()]
        else:
            ident = [src["hf"]["id"], src["hf"]["revision"]]
    except OSError:
        return None
    # the last element versions what is cached (v2: only modules LoRA can wrap)
    return hashlib.sha256(json.dumps([ident, tf_version, 2]).encode()).hexdigest()[:32]


def _module_cache_dir() -> Path:
    import os

    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "stsflow" / "module-names"


def model_module_names(model: dict, base_dir: Path) -> set[str] | None:
    """Names of the leaf modules of a model, from a small disk cache (every Snakemake start and
    every cluster job validates the config; building the names costs seconds of imports) or
    built and cached; None where the config is not available offline."""
    import json

    key = _module_cache_key(model["source"], base_dir)
    path = _module_cache_dir() / f"{key}.json" if key else None
    if path is not None and path.exists():
        try:
            return set(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    names = _build_module_names(model, base_dir)
    if names is not None and path is not None:
        try:
            from stsflow.io.files import write_json

            write_json(path, sorted(names))
        except OSError:  # a read-only home only costs the time
            pass
    return names


def _build_module_names(model: dict, base_dir: Path) -> set[str] | None:
    """Names of the leaf modules of a model, built on the meta device from its config (no
    weights are read); None where the config is not available offline.

    A GGUF file's config is rebuilt from its header with transformers' own GGUF key mapping
    (``AutoConfig.from_pretrained(gguf_file=...)`` also parses the embedded tokenizer, ten
    seconds for the default model); GGUF architectures whose name is not a transformers model
    type are not checked. Hub models are only looked up in the local cache, never on the network
    (the hub is not reachable everywhere): uncached ones are not checked here."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    src = model["source"]
    try:
        if "gguf_package" in src:
            from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

            fields = gguf_fields(str(package_file(src["gguf_package"])))
            arch = fields["general.architecture"]
            mapping = GGUF_CONFIG_MAPPING.get(arch, {})
            kwargs = {hf: fields[f"{arch}.{key}"] for key, hf in mapping.items()
                      if hf and f"{arch}.{key}" in fields}
            cfg = AutoConfig.for_model(arch, **kwargs)
        elif "local" in src:
            cfg = AutoConfig.from_pretrained(base_dir / src["local"]["path"])
        else:
            cfg = AutoConfig.from_pretrained(src["hf"]["id"], revision=src["hf"]["revision"],
                                             local_files_only=True)
        with torch.device("meta"):
            net = AutoModelForCausalLM.from_config(cfg)
    except Exception:
        return None
    return {n for n, mod in net.named_modules()
            if n and not any(True for _ in mod.children()) and _lora_wrappable(mod)}


def _lora_wrappable(module) -> bool:
    """Module types peft's LoRA can wrap (others, e.g. norms and activations, it refuses with
    "Target module ... is not supported" only when the fine-tuning job starts)."""
    import torch.nn as nn

    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - every supported transformers has it
        Conv1D = ()
    return isinstance(module, (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d,
                               Conv1D))


# -- SAE facts: hook, input width, width -------------------------------------------------------

_RESID = [(re.compile(r"^blocks\.(\d+)\.hook_resid_post$"), 0),
          (re.compile(r"^blocks\.(\d+)\.hook_resid_pre$"), -1),  # the input of block L+1
          (re.compile(r"^model\.(?:language_model\.)?layers\.(\d+)(?:\.output)?$"), 0)]


def resid_layer(hook_name: str | None) -> int | None:
    """The block L whose output residual stream ``hook_name`` reads (sae-lens / TransformerLens
    names ``blocks.L.hook_resid_post`` or ``blocks.{L+1}.hook_resid_pre``, Hugging Face module
    names ``model.layers.L``); None for other hooks (attention, MLP, resid_mid, ...)."""
    for pattern, offset in _RESID:
        m = pattern.match(hook_name or "")
        if m:
            return int(m.group(1)) + offset
    return None


def sae_cfg_facts(cfg: dict) -> dict:
    """hook_name, d_in, width and declared model of an sae-lens ``cfg.json`` (6.x keeps the hook
    and model under ``metadata``; older files have them at the top level, the hook possibly as
    ``hook_point``)."""
    meta = cfg.get("metadata") or {}

    def pick(*keys):
        for key in keys:
            for src in (meta, cfg):
                if src.get(key) is not None:
                    return src[key]
        return None

    return {"hook_name": pick("hook_name", "hook_point"), "d_in": cfg.get("d_in"),
            "width": cfg.get("d_sae"), "model_name": pick("model_name")}


def accelerator_visible() -> bool:
    """Whether this machine shows a GPU that torch could use (NVIDIA, ROCm or WSL2 device nodes,
    not hidden by ``CUDA_VISIBLE_DEVICES``; ``device: cuda`` plans for a GPU whatever this finds), read without importing torch: the workflow plans its
    local jobs with it (a model job on a CPU takes one core, not a GPU unit), and every planning
    call would otherwise pay torch's import. The job itself still resolves ``device: auto`` with
    torch."""
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl",
                                           "/dev/kfd", "/dev/dxg"))


def runs_on_cpu(device: str) -> bool:
    """Whether a model configured with ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1`` …) runs
    on this machine's CPU."""
    if device == "auto":
        return not accelerator_visible()
    return device == "cpu"
