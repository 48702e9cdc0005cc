"""FIXME-DOC jobs/prepare (from pipeline)."""

from __future__ import annotations

import json
from pathlib import Path

from stsflow.data import corpora
from stsflow.jobs.common import _load, log

# -- data ---------------------------------------------------------------------------------------

def _materialize(source: dict, spec: dict, limit: int | None, out, what: str) -> None:
    records = corpora.load_corpus(source, spec["schema"], spec["fields"])
    records, sample = corpora.sample_records(records, limit, spec.get("sample_seed", 0))
    if not records:
        raise ValueError(f"{what} source {source} gave no records")
    corpora.write_records(records, out, {"source": source, "schema": spec["schema"],
                                         "n_records": len(records), "sample": sample})


def materialize_sft(spec: dict, out: Path | str) -> None:
    _materialize(spec["source"], spec, spec.get("max_items"), out, "SFT")


def materialize_domain(spec: dict, out_test: Path | str, out_demos: Path | str) -> None:
    """The test split (``max_items``: a seeded sample) and the demonstration split (whole: its
    first m items are the worked examples)."""
    _materialize(spec["test"], spec, spec.get("max_items"), out_test, "domain test")
    _materialize(spec["demos"], spec, None, out_demos, "domain demos")


# -- models and SAEs ----------------------------------------------------------------------------

def prepare_model(spec: dict, outdir: Path | str) -> None:
    from stsflow.models.load import prepare_model as prep

    info = prep(spec, outdir)
    log.info("prepared model: %s", json.dumps(info))


def sae_training_windows(tokenizer, segmenter, corpus_files: list[tuple[str, str]],
                         context_length: int, by_record: bool = False) -> list:
    """Token windows of the SAE training text: every record rendered as a full exchange after
    the chat head, as ``(ids, skip)`` with the head positions to skip (see sae.py). With
    ``by_record``, one list of windows per record (a held-out split must keep a record's windows
    together: a long solution is cut into several)."""
    records = []
    head = segmenter.head()
    for kind, path in corpus_files:
        for rec in corpora.read_records(path):
            body = segmenter.demo(rec, kind)
            pieces = [body[i:i + context_length] for i in range(0, len(body), context_length)]
            windows = [(head + p, len(head)) for p in pieces if len(p) >= 8]
            if windows:
                records.append(windows)
    if not records:
        raise ValueError("no SAE training text")
    return records if by_record else [w for windows in records for w in windows]


def prepare_sae(model_dir, mspec: dict, layer: int, sae_spec: dict, corpora_files: dict,
                plan: dict, outdir, *, where: str, threads: int | None = None,
                n_top: list[int] | None = None) -> None:
    """Fetch (registry), check (registry, local) or train the SAE of one layer, then measure its
    quality on held-out corpus tokens (see stsflow.sae).

    ``corpora_files`` maps a corpus name to ``(kind, materialised file)``; ``plan`` names the
    corpora that train (``train``, empty for pretrained SAEs) and evaluate it (``eval``).
    ``where`` is the SAE's config entry for error messages; ``n_top`` the STS sizes to check
    against a registry SAE's width (the registry YAML does not carry widths)."""
    from stsflow.models.load import model_info
    from stsflow.sae import prepare, quality, train
    from stsflow.text.segments import Segmenter

    minfo = model_info(model_dir)
    fetched = None
    if "train" not in sae_spec:  # refused before the model is loaded or weights are fetched
        fetched = prepare.fetch_pretrained(sae_spec, layer=layer,
                                           hidden_size=minfo["hidden_size"], where=where,
                                           n_top=n_top)
    model, tok, info = _load(model_dir, mspec, threads)
    seg = Segmenter.for_tokenizer(tok, mspec["chat_template"])
    spec = sae_spec.get("train")
    context = spec["context_length"] if spec else quality.EVAL_CONTEXT
    pool = {name: sae_training_windows(tok, seg, [corpora_files[name]], context, by_record=True)
            for name in dict.fromkeys(plan["train"] + plan["eval"])}
    held_out, train_windows = quality.split_held_out(
        pool, plan["eval"], plan["train"], sae_spec["eval_tokens"], spec["seed"] if spec else 0)
    log.info("SAE L%d: %d held-out windows from %s", layer, len(held_out), plan["eval"])
    device = str(next(model.parameters()).device)
    provenance = {"eval_corpora": plan["eval"], "eval_windows": len(held_out)}
    if spec:
        if not train_windows:
            raise ValueError(f"{where}.train.corpora: {len(held_out)} token window(s), too few "
                             "to train an SAE and hold some out. Fix: add corpora")
        train.train_sae(model, layer, train_windows, spec, outdir, d_in=info["hidden_size"],
                          device=device, held_out=held_out, model_batch=mspec["batch_size"],
                          provenance=provenance, log=log.info)
    else:
        configured = info.get("id") or info.get("file") or Path(info.get("path", "")).name
        prepare.prepare_pretrained(*fetched, outdir, model=model, layer=layer, held_out=held_out,
                                   configured_model=configured, device=device,
                                   model_batch=mspec["batch_size"], provenance=provenance,
                                   log=log.info)
