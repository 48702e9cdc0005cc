"""Jobs of the prepare rules: corpora materialised as normalised Parquet records, a loadable
model directory, and the SAE of one (model, layer) with its quality figures."""

from __future__ import annotations

import json
from pathlib import Path

from stsflow.config.settings import CorpusSettings, ModelSettings, SaeSettings
from stsflow.data import corpora
from stsflow.io.files import read_json
from stsflow.jobs.common import load_job_model, log, model_identity

# -- data ---------------------------------------------------------------------------------------

def _materialize(source: dict, corpus: CorpusSettings, limit: int | None, out, what: str) -> None:
    # a hub dataset is read at the commit its branch points to now, and the file records it
    source = corpora.pin_revision(source, log=log.warning)
    records = corpora.load_corpus(source, corpus.schema, corpus.fields)
    records, sample = corpora.sample_records(records, limit, corpus.sample_seed)
    if not records:
        raise ValueError(f"{what} source {source} gave no records")
    corpora.write_records(records, out, {"source": source, "schema": corpus.schema,
                                         "n_records": len(records), "sample": sample})


def materialize_sft(corpus: CorpusSettings, out: Path | str) -> None:
    _materialize(corpus.source, corpus, corpus.max_items, out, "SFT")


def materialize_domain(corpus: CorpusSettings, out_test: Path | str,
                       out_demos: Path | str) -> None:
    """The test split (``max_items``: a seeded sample) and the demonstration split (whole: its
    first m items are the worked examples)."""
    _materialize(corpus.test, corpus, corpus.max_items, out_test, "domain test")
    _materialize(corpus.demos, corpus, None, out_demos, "domain demos")


def materialize_pool(corpus: CorpusSettings, against: dict, out: Path | str, where: str) -> None:
    """A domain's pool split (``corpus.source``: domains.<name>.pool), whole, refused where it
    shares a question with any of the ``against`` sources (the domain's whole test source, not
    only its max_items sample, and its demonstrations: mixture.replay.check_disjoint)."""
    from stsflow.mixture.replay import check_disjoint

    source = corpora.pin_revision(corpus.source, log=log.warning)
    records = corpora.load_corpus(source, corpus.schema, corpus.fields)
    if not records:
        raise ValueError(f"{where}: the pool source {source} gave no records")
    held = [r for src in against.values()
            for r in corpora.load_corpus(src, corpus.schema, corpus.fields)]
    check_disjoint(records, held, where)
    corpora.write_records(records, out, {"source": source, "schema": corpus.schema,
                                         "n_records": len(records), "sample": None})


# -- models and SAEs ----------------------------------------------------------------------------

def fetch(source: dict | None, sae: dict | None, out: Path | str) -> None:
    """Download a hub model (``source``, a model's config source) or a registry or hub SAE
    (``sae``, its config) into the Hugging Face cache; record what was fetched in ``out``."""
    from stsflow.io import hub
    from stsflow.io.files import write_json

    got = hub.fetch_model(source) if source is not None else hub.fetch_sae(sae)
    if got is None:
        raise ValueError("nothing to download: the model or SAE is not on the hub")
    got.pop("snapshot")  # a path on this machine: not part of the record
    log.info("fetched %s@%s: %d files, %.1f MB", got["repo"], got["revision"], len(got["files"]),
             got["bytes"] / 1e6)
    write_json(out, got)


def prepare_model(model: ModelSettings, outdir: Path | str, fetched: Path | str | None = None
                  ) -> None:
    """A loadable model directory. ``fetched``: fetch_model's record of a hub model, whose commit
    pins the revision (the weights in the cache are that commit's, whatever the branch says now)."""
    from stsflow.models.load import prepare_model as prep

    source = model.source
    if fetched is not None:
        commit = read_json(fetched)["revision"]
        source = {**source, "hf": {**source["hf"], "revision": commit}}
    info = prep(source, outdir)
    log.info("prepared model: %s", json.dumps(info))


def sae_training_windows(tokenizer, segmenter, corpus_files: list[tuple[str, str]],
                         context_length: int, by_record: bool = False) -> list:
    """Token windows of the SAE training text: every record rendered as a full exchange after
    the chat head, as ``(ids, skip)`` with the head positions to skip (see stsflow.sae). With
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


def sae_resume(model_dir, minfo: dict, layer: int, sae: SaeSettings, outdir):
    """Where an SAE's training checkpoints (``<outdir>.resume``), and what its state depends on:
    the SAE's settings, the layer, the model, the package versions (the trainer adds its
    windows' tokens). Checkpoints are taken about ten times a run (stsflow.resume) and removed
    once the SAE is written."""
    import dataclasses

    from stsflow.io.files import package_versions
    from stsflow.models.load import local_fingerprint
    from stsflow.resume import Resume, beside

    return Resume(beside(outdir), {
        "sae": dataclasses.asdict(sae), "layer": layer,
        "model": dict(model_identity(minfo), fingerprint=local_fingerprint(model_dir)),
        "packages": package_versions()}, log=log.info)


def prepare_sae(model_dir, model: ModelSettings, layer: int, sae: SaeSettings,
                corpora_files: dict, train_corpora: list[str], eval_corpora: list[str], outdir, *,
                where: str, threads: int | None = None, n_top: list[int] | None = None,
                fetched: Path | str | None = None) -> None:
    """Fetch (registry, hub), check (registry, hub, local) or train the SAE of one layer, then
    measure its quality on held-out corpus tokens (see stsflow.sae).

    ``fetched``: fetch_sae's record of a ``hub`` SAE, whose commit pins the revision read (as
    prepare_model pins a hub model's).

    ``corpora_files`` maps a corpus name to ``(kind, materialised file)``; ``train_corpora`` (empty
    for a pretrained SAE) and ``eval_corpora`` name the corpora that train and evaluate it.
    ``where`` is the SAE's config entry for error messages; ``n_top`` the STS sizes to check
    against a registry SAE's width (the registry YAML does not carry widths)."""
    if fetched is not None and sae.hub is not None:
        import dataclasses

        commit = read_json(fetched)["revision"]
        sae = dataclasses.replace(sae, hub={**sae.hub, "revision": commit})
    from stsflow.models.load import model_info
    from stsflow.sae import prepare, quality, train
    from stsflow.text.segments import Segmenter

    minfo = model_info(model_dir)
    fetched = None
    if sae.train is None:  # refused before the model is loaded or weights are fetched
        fetched = prepare.fetch_pretrained(sae, layer=layer,
                                           hidden_size=minfo["hidden_size"], where=where,
                                           n_top=n_top)
    lm, tok, info = load_job_model(model_dir, model, threads)
    seg = Segmenter.for_tokenizer(tok, model.chat_template)
    spec = sae.train
    context = spec.context_length if spec else quality.EVAL_CONTEXT
    pool = {name: sae_training_windows(tok, seg, [corpora_files[name]], context, by_record=True)
            for name in dict.fromkeys(list(train_corpora) + list(eval_corpora))}
    held_out, train_windows = quality.split_held_out(
        pool, list(eval_corpora), list(train_corpora), sae.eval_tokens, spec.seed if spec else 0)
    log.info("SAE L%d: %d held-out windows from %s", layer, len(held_out), list(eval_corpora))
    device = str(next(lm.parameters()).device)
    provenance = {"eval_corpora": list(eval_corpora), "eval_windows": len(held_out)}
    configured = info.get("id") or info.get("file") or Path(info.get("path", "")).name
    if spec:
        if not train_windows:
            raise ValueError(f"{where}.train.corpora: {len(held_out)} token window(s), too few "
                             "to train an SAE and hold some out. Fix: add corpora")
        resume = sae_resume(model_dir, info, layer, sae, outdir)
        train.train_sae(lm, layer, train_windows, spec, outdir, d_in=info["hidden_size"],
                        device=device, held_out=held_out, model_batch=model.batch_size,
                        provenance=provenance, log=log.info, model_name=configured,
                        resume=resume)
        resume.finish()
    else:
        prepare.prepare_pretrained(*fetched, outdir, model=lm, layer=layer, held_out=held_out,
                                   configured_model=configured, device=device,
                                   model_batch=model.batch_size, provenance=provenance,
                                   log=log.info)
