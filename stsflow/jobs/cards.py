"""Job of the cards rule: feature cards of one (model, layer, SAE, SFT set, seed), from the plain
shards already extracted, the SAE's decoder and the model's LM head (``stsflow.report.cards``)."""

from __future__ import annotations

import time
from pathlib import Path

from stsflow.config.settings import CardSettings, ModelSettings
from stsflow.jobs.common import load_job_model, log, model_identity, sae_identity


def decoder_rows(sae_dir: Path | str, dims) -> "np.ndarray":  # noqa: F821
    """Rows ``dims`` of a prepared SAE's decoder W_dec (width × d), read from its sae-lens
    weights file without building the SAE."""
    from safetensors import safe_open

    from stsflow.io.files import check_safetensors
    from stsflow.sae.info import read_info

    info = read_info(sae_dir)
    where = Path(info["path"]) if info["kind"] == "local" else Path(sae_dir) / info["path"]
    if info["kind"] != "local":  # written by prepare_sae (a local SAE is the user's file)
        check_safetensors(where / "sae_weights.safetensors")
    with safe_open(str(where / "sae_weights.safetensors"), framework="pt") as f:
        return f.get_tensor("W_dec")[list(map(int, dims))]


def cards(shifts: dict[str, Path | str], shards: dict[tuple[str, str], Path | str],
          sae_dir: Path | str, model_dir: Path | str, out: Path | str, *,
          settings: CardSettings, model: ModelSettings, keys: dict,
          threads: int | None = None) -> None:
    """Write the cards table of ``keys`` (model, layer, sae, sft, seed) to ``out``: the top
    ``settings.n_top`` dimensions of each shift vector (``shifts``: shift name → table, the
    prediction ``s<seed>`` and every ``true-<method>-s<seed>``), scanned on ``shards``
    ((kind, corpus) → plain shard, the SFT set first)."""
    from stsflow.io.files import package_versions, read_frame, write_parquet
    from stsflow.report.cards import build_cards, neuronpedia_base, set_name
    from stsflow.report.lens import feature_logits, top_tokens
    from stsflow.sae.info import read_info

    t0 = time.time()
    tables = {set_name(name): read_frame(path) for name, path in shifts.items()}
    lm, tok, info = load_job_model(model_dir, model, threads)

    def decode(ids):
        return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def lens(dims):
        logits = feature_logits(lm, decoder_rows(sae_dir, dims), vocab=len(tok))
        return top_tokens(logits, settings.lens_tokens, decode)

    sae_info = read_info(sae_dir)
    table = build_cards(tables, shards, n_top=settings.n_top, contexts=settings.contexts,
                        window=settings.window, decode=decode, lens=lens,
                        neuronpedia=neuronpedia_base(sae_info), keys=keys)
    write_parquet(table.to_arrow(), out, metadata={
        **keys, "settings": settings.__dict__, "model_identity": model_identity(info),
        "sae_identity": sae_identity(sae_info), "shifts": sorted(tables),
        "corpora": [f"{k}:{c}" for k, c in shards], "packages": package_versions()})
    log.info(f"cards: {table.height} cards of {len(set(table['dim'].to_list()))} dimensions "
             f"from {len(shards)} shards in {time.time() - t0:.1f} s")
