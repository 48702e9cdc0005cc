"""Job of the extract rule: SAE features of one (model, layer, corpus, mode) as a shard plus
per-dimension statistics, after checking that every input fits the model's context."""

from __future__ import annotations

from pathlib import Path

from stsflow.config.settings import ExtractSettings, ModelSettings
from stsflow.data import corpora
from stsflow.features.queries import build_queries
from stsflow.io.files import package_versions, read_metadata
from stsflow.jobs.common import load_job_model, log, model_identity, sae_identity
from stsflow.text.demos import demonstration_context


class ContextError(ValueError):
    pass


def check_context(limit: int | None, why: str, prefixes: dict[str, int], longest_query: int,
                  where: str, knob: str, model: str = "<model>", action: str = "error"
                  ) -> list[str]:
    """Head + demonstrations + the longest query must fit the model's context (docs/method.md#context-guard assumes
    every query token sees every demonstration). ``prefixes`` maps a run to its prefix length.
    ``action`` "error" raises ContextError; "warn" (sts.context_check) returns the problems, which
    the shard then records."""
    problems = []
    for run, n_prefix in prefixes.items():
        if limit and n_prefix + longest_query > limit:
            problems.append(
                f"{where}: the {run} input does not fit the model's context: prefix (head + "
                f"demonstrations) {n_prefix} tokens + longest query {longest_query} tokens = "
                f"{n_prefix + longest_query} > {limit} ({why}). Fix: lower {knob} (fewer "
                f"demonstrations), or models.{model}.max_length (queries are cut to it), or "
                "shorten the demonstrations in the data; sts.context_check: warn goes on anyway")
    if problems and action == "error":
        raise ContextError("\n".join(problems))
    for p in problems:
        log.warning(p)
    return problems


def context_record(limit: int | None, why: str, prefixes: dict[str, int],
                   query_lengths: list[int]) -> dict:
    """How many queries of each run (``prefixes``: run -> prefix length) do not fit the model's
    context: the shard's ``context`` metadata, which the coverage table and the report carry
    (a run that goes on with sts.context_check: warn has such queries; beyond
    max_position_embeddings nothing is cut, the model runs past its trained positions)."""
    lengths = list(query_lengths)
    return {"limit": limit, "why": why, "runs": {
        run: {"prefix_tokens": int(p), "n_queries": len(lengths),
              "n_overflow": int(sum(p + n > limit for n in lengths)) if limit else 0}
        for run, p in prefixes.items()}}


def prefix_digest(prefix: list[int]) -> str:
    """sha256 of a prefix's token ids: what a tuned run compares with its plain reference."""
    import hashlib

    return hashlib.sha256(",".join(str(int(t)) for t in prefix).encode()).hexdigest()


def check_same_prompt(reference, head: str, prefix: list[int], where: str) -> None:
    """A tuned (or post-hoc) model's run must see the base plain run's prompt: the same chat head
    text and the same prefix token ids (its own tokenizer and chat template could differ), so
    the true shift compares the two models on one input. The query tokens are compared token by
    token when the features are paired (``features.extract``)."""
    meta = read_metadata(reference)
    problems = []
    if meta.get("prompt_head") is not None and meta["prompt_head"] != head:
        problems.append(f"prompt head {head!r} vs the base plain run's {meta['prompt_head']!r}")
    if "prefix_sha256" in meta:
        if meta["prefix_sha256"] != prefix_digest(prefix):
            problems.append(f"prefix token ids differ ({len(prefix)} tokens vs the base plain "
                            f"run's {meta.get('prefix_tokens')})")
    elif meta.get("prefix_tokens") is not None and int(meta["prefix_tokens"]) != len(prefix):
        problems.append(f"prefix of {len(prefix)} tokens vs the base plain run's "
                        f"{meta['prefix_tokens']}")
    else:  # a plain shard written before prefix ids were recorded: the head text was compared
        log.warning(f"{where}: the base plain run did not record its prefix token ids; only "
                    "the prompt head's text and length were compared")
    if problems:
        raise ValueError(f"{where}: the tuned model's input is not the base plain run's: "
                         + "; ".join(problems) + ". Its tokenizer or chat template differs from "
                         "the base model's, so the true shift would compare different inputs. "
                         "Fix: give the tuned model the base model's tokenizer files (for a "
                         "post-hoc pair, copy them into posthoc.<label>.tuned's directory)")


def extract(model_dir, sae_dir, model: ModelSettings, layer: int, mode, data: dict,
            settings: ExtractSettings, out, stats_out, reference=None, panel_out=None,
            panel_reference=None, resid_out=None,
            provenance: dict | None = None,
            threads: int | None = None, corpus: str | None = None,
            model_name: str | None = None) -> None:
    """One (model, layer, corpus, mode) extraction; ``mode`` a ``stsflow.mode.Mode`` or its
    string. ``settings.kind`` is "sft" or "domain"; ``data`` maps "sft_items" (SFT) or
    "test"/"demos" (domain) to materialised Parquet files. The context check runs on the tokenizer alone,
    before the model is loaded; a domain's plain run checks its ICL prefix too, so a domain
    whose demonstrations cannot fit fails at its first job. With ``panel_out`` the same pass
    gathers the baseline predictors' statistics (``features.panel``); a paired run then needs
    ``panel_reference``, the plain run's panel directory. ``resid_out`` keeps the residuals for
    the layer's sweep SAEs (``encode_sweep``)."""
    from stsflow.features import extract as ex
    from stsflow.mode import Mode
    from stsflow.models.load import context_limit, load_tokenizer
    from stsflow.sae.prepare import load_sae
    from stsflow.text.segments import Segmenter

    mode = Mode.parse(str(mode))
    kind = settings.kind
    mode.check_corpus(kind)
    corpus = corpus or (provenance or {}).get("corpus", "?")
    tok, model_cfg = load_tokenizer(model_dir)
    seg = Segmenter.for_tokenizer(tok, model.chat_template)
    records = corpora.read_records(data["sft_items"] if kind == "sft" else data["test"])
    queries, selection = build_queries(seg, records, settings, model.max_length)
    prefix, demo_ids, excluded = demonstration_context(seg, mode, kind, records, data,
                                                       settings.demonstrations)
    queries = [q for q in queries if q[0] not in excluded]
    if not queries:
        raise ValueError(f"{corpus}: no query left to extract")
    prefixes = {str(mode): len(prefix)}
    if kind == "domain" and mode.kind == "plain":
        prefixes[str(Mode.domain_icl())] = len(
            demonstration_context(seg, Mode.domain_icl(), kind, records, data,
                                  settings.demonstrations)[0])
    limit, why = context_limit(model_cfg, layer)
    where = f"sft.{corpus}" if kind == "sft" else f"domains.{corpus}"
    overflow = check_context(limit, why, prefixes, max(len(q[1]) for q in queries), where,
                             "sts.t" if kind == "sft" else "sts.m", model_name or "<model>",
                             settings.context_check)
    if mode.tuned_model and reference is not None:
        check_same_prompt(reference, seg.layout.head, prefix, f"{where} ({mode})")

    lm, tok, minfo = load_job_model(model_dir, model, threads)
    sae, sinfo = load_sae(sae_dir, device=str(next(lm.parameters()).device))
    meta = dict(provenance or {}, model=model_identity(minfo), sae=sae_identity(sinfo),
                dtype=model.dtype, chat_template=model.chat_template,
                prompt_head=seg.layout.head, mode=str(mode),
                demonstrations_from=mode.demonstrations,
                kind=kind, demonstrations=demo_ids, query_tokens=settings.query_tokens,
                selection=dict(selection, context_limit=limit), context_overflow=overflow,
                context=context_record(limit, why, prefixes, [len(q[1]) for q in queries]),
                prefix_sha256=prefix_digest(prefix),
                dataset=read_metadata(data["sft_items"] if kind == "sft" else data["test"]),
                packages=package_versions())
    device = next(lm.parameters()).device
    panel = None if panel_out is None else _panel(
        sae, sinfo, int(lm.config.hidden_size), mode, kind, settings, panel_reference, device)
    ex.extract(lm, sae, layer, queries, prefix, out, stats_out, resid_out=resid_out,
               batch_size=model.batch_size, batch_tokens=model.batch_tokens,
               feat_dtype=settings.feat_dtype, reference=reference,
               metadata=meta, row_group_rows=settings.row_group_rows, log=log.info,
               panel=panel, panel_out=panel_out)


def _panel(sae, sinfo: dict, d: int, mode, kind: str, settings: ExtractSettings,
           panel_reference, device):
    """The panel accumulator of one run (``features.panel_gather``): the random encoder of this
    SAE's width and k, the plain run's residuals as the reference of a paired run."""
    from stsflow.features import panel as pn
    from stsflow.features import panel_gather as pg
    from stsflow.features.shards import FEAT_DTYPES, sae_width

    enc = pg.RandomEncoder.for_sae(sae, d, sae_width(sae), sinfo.get("l0"),
                                   settings.control_seed, device=device)
    if mode.paired and panel_reference is None:
        raise ValueError(f"{mode} extraction: the panel needs the plain run's panel")
    return pg.PanelAccumulator(
        d, sae_width(sae), enc, device,
        reference=(None if not mode.paired else Path(panel_reference) / pn.RESID_TOKENS),
        keep_tokens=mode.kind == "plain",
        keep_prefix=kind == "sft" and mode.kind in ("plain", "icl"),  # scores.unaligned
        resid_dtype=FEAT_DTYPES[settings.feat_dtype][0])


def encode_sweep(residuals, sae_dir, mode, settings: ExtractSettings, out, stats_out,
                 panel_out, reference=None, panel_reference=None, device: str = "auto",
                 batch_size: int = 16, threads: int | None = None) -> None:
    """A sweep SAE's extraction: the residuals its layer's own extraction kept
    (``residuals``, a ``<mode>.resid/`` directory), encoded with this SAE into the same shard,
    statistics and panel, without running the model (``features.extract.encode_cached``)."""
    import torch

    from stsflow.features import extract as ex
    from stsflow.features.residuals import resid_width
    from stsflow.mode import Mode
    from stsflow.models.load import resolve_device
    from stsflow.sae.prepare import load_sae

    if threads:
        torch.set_num_threads(threads)
    mode = Mode.parse(str(mode))
    dev = resolve_device(device)
    sae, sinfo = load_sae(sae_dir, device=dev)
    d = resid_width(residuals)
    panel = _panel(sae, sinfo, d, mode, settings.kind, settings, panel_reference, dev)
    ex.encode_cached(sae, residuals, out, stats_out, device=dev,
                     metadata={"sae": sae_identity(sinfo), "packages": package_versions()},
                     batch_size=batch_size, feat_dtype=settings.feat_dtype, reference=reference,
                     row_group_rows=settings.row_group_rows, log=log.info, panel=panel,
                     panel_out=panel_out)


def gradients(model_dir, model: ModelSettings, kind: str, data, settings: dict,
              targets: list[str], out, threads: int | None = None) -> None:
    """The projected mean low-rank gradient of one corpus on the base model
    (``features.gradients``): an SFT set's ``settings["grad_examples"]`` records drawn with
    ``sample_seed``, or a domain's worked examples (``data``: its demonstrations file).
    ``settings``: grad_examples, grad_dim, control_seed, sample_seed (sts.*)."""
    import pyarrow as pa

    from stsflow.features.gradients import mean_gradient
    from stsflow.finetune.train import build_examples
    from stsflow.io.files import write_parquet
    from stsflow.text.segments import Segmenter

    records = corpora.read_records(data)
    records = corpora.sample_records(records, settings["grad_examples"],
                                     settings["sample_seed"])[0] if kind == "sft" else \
        records[:settings["grad_examples"]]
    lm, tok, minfo = load_job_model(model_dir, model, threads)
    seg = Segmenter.for_tokenizer(tok, model.chat_template)
    examples = build_examples(records, seg, model.max_length, kind=kind)
    vec, meta = mean_gradient(lm, examples, targets, settings["control_seed"],
                              settings["grad_dim"], log=log.info)
    write_parquet(pa.table({"value": vec}), out,
                  dict(meta, kind=kind, model=model_identity(minfo),
                       records=[r.get("id", r.get("question_id")) for r in records],
                       packages=package_versions()))
