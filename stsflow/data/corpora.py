"""Corpora: load SFT sets and domains from the hub, local files or the built-in generators, and
normalise them to one of two record schemas (see ``stsflow.text.prompts``)."""

from __future__ import annotations

import json
from pathlib import Path

from stsflow.text.prompts import LETTERS

SCHEMA_FIELDS = {
    "limo": ("id", "question", "solution", "answer"),
    "mmlu_pro": ("question_id", "question", "options", "answer", "answer_index", "cot_content",
                 "category", "src"),
}
REQUIRED = {"limo": ("question", "solution"), "mmlu_pro": ("question", "options")}


class CorpusError(ValueError):
    """A corpus that cannot be used; ``field`` is the key of the source it comes from, where one
    key is to blame (``local.path``), for config validation to name."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "json", ".csv": "csv"}


def _read_local(path: Path, fmt: str) -> list[dict]:
    if not path.exists():
        raise CorpusError(f"{path}: no such file", "local.path")
    told = fmt
    if fmt == "auto":
        suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
        fmt = FORMATS.get(suffix)
        if fmt is None:
            raise CorpusError(f"{path}: cannot tell the format from the suffix; set format",
                              "local.format")
    try:
        rows = _parse(path, fmt)
    except Exception as exc:  # noqa: BLE001 - every reader's own error, named in one line
        reason = " ".join(str(exc).split()) or type(exc).__name__
        reason = reason if len(reason) <= 240 else reason[:239] + "…"
        how = "its suffix says" if told == "auto" else "local.format says"
        others = ", ".join(f for f in FORMATS.values() if f != fmt)
        raise CorpusError(
            f"{path} is not readable as {fmt} (as {how}): {reason}. Fix: point it at a {fmt} "
            f"file, or, if the file is right and its name is not, set local.format to its real "
            f"format ({others})", "local.path") from None
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise CorpusError(f"{path}: row {bad} is not a record with named fields (a "
                          f"{type(rows[bad]).__name__}). Fix: one object per row (JSON/JSONL), "
                          "or a table with named columns", "local.path")
    return rows


def _parse(path: Path, fmt: str) -> list:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if fmt == "jsonl":
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"line {n}: {exc}") from None
        return rows
    if fmt == "json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, (list, dict)):
            raise ValueError("its top level is neither a list of records nor an object with "
                             "one under 'data'")
        return data if isinstance(data, list) else data.get("data", [])
    import polars as pl

    return pl.read_csv(path).to_dicts()


def _read_hub(spec: dict) -> list[dict]:
    import datasets

    ds = datasets.load_dataset(spec["id"], spec.get("config"), split=spec["split"],
                               revision=spec.get("revision", "main"))  # a commit once pinned
    return ds.to_list()


def pin_revision(source: dict, log=None) -> dict:
    """A hub source with its revision (a branch or tag: ``main`` by default) resolved to the
    commit it points to now, so that the records are read from that commit and the materialised
    file names it (``requested_revision`` keeps what the config asked for). Other sources, and a
    hub source whose commit cannot be asked (no network: the datasets cache is read as is), come
    back unchanged, the latter marked ``revision_resolved: false``."""
    if "hub" not in source:
        return source
    spec = source["hub"]
    asked = spec.get("revision", "main")
    try:
        from huggingface_hub import HfApi

        sha = HfApi().dataset_info(spec["id"], revision=asked, timeout=30).sha
    except Exception as exc:  # offline, or the hub unreachable: read what the cache holds
        if log:
            log(f"dataset {spec['id']}@{asked}: commit not resolved ({type(exc).__name__}); "
                "the revision recorded is the configured one")
        return {**source, "hub": {**spec, "revision_resolved": False}}
    return {**source, "hub": {**spec, "revision": sha, "requested_revision": asked}}


def _read_builtin(spec: dict) -> list[dict]:
    from stsflow.data import builtin

    name, split = spec["name"], spec.get("split", "train")
    if name in builtin.SFT_SETS:
        return builtin.SFT_SETS[name]()
    if name in builtin.DOMAINS:
        if split == "pool":
            return builtin.pool_items(name)
        test, demos = builtin.domain_items(name)
        return demos if split == "demos" else test
    raise CorpusError(f"unknown builtin corpus {name!r}; known: "
                      f"{', '.join([*builtin.SFT_SETS, *builtin.DOMAINS])}")


def read_rows(source: dict, base_dir: Path | str = ".") -> list[dict]:
    """Raw rows of a source, with its filter applied."""
    if "hub" in source:
        rows = _read_hub(source["hub"])
    elif "local" in source:
        path = Path(source["local"]["path"])
        rows = _read_local(path if path.is_absolute() else Path(base_dir) / path,
                           source["local"].get("format", "auto"))
    else:
        rows = _read_builtin(source["builtin"])
    for col, val in (source.get("filter") or {}).items():
        rows = [r for r in rows if r.get(col) == val]
    return rows


def normalise(rows: list[dict], schema: str, fields: dict | None = None) -> list[dict]:
    """Rename columns per ``fields`` (schema field -> source column) and fill derived fields."""
    fields = fields or {}
    out = []
    for i, row in enumerate(rows):
        rec = {f: row.get(fields.get(f, f)) for f in SCHEMA_FIELDS[schema]}
        missing = [f for f in REQUIRED[schema] if rec[f] in (None, "")]
        if missing:
            raise CorpusError(f"row {i}: missing {', '.join(missing)}; map them with fields:")
        if schema == "limo":
            rec["id"] = str(rec["id"] if rec["id"] is not None else i)
            rec["answer"] = "" if rec["answer"] is None else str(rec["answer"])
        else:
            rec["options"] = [str(o) for o in rec["options"]]
            if rec["answer_index"] is None and rec["answer"] is not None:
                rec["answer_index"] = LETTERS.index(str(rec["answer"]).strip())
            if rec["answer_index"] is not None:
                rec["answer_index"] = int(rec["answer_index"])
                rec["answer"] = LETTERS[rec["answer_index"]]
            rec["question_id"] = int(rec["question_id"]) if rec["question_id"] is not None else i
            rec["cot_content"] = rec["cot_content"] or ""
            rec["category"] = rec["category"] or ""
            rec["src"] = rec["src"] or ""
        out.append(rec)
    return out


def sample_records(records: list[dict], max_items: int | None, seed: int
                   ) -> tuple[list[dict], dict]:
    """At most ``max_items`` records as a seeded random sample, kept in corpus order (real
    benchmark files are ordered by source, so the first rows are a biased sample), and the
    provenance of the draw: seed, rows available, rows kept and their positions."""
    n = len(records)
    if not max_items or max_items >= n:
        return records, {"seed": seed, "n_source": n, "n_kept": n, "rows": "all"}
    import numpy as np

    keep = np.sort(np.random.default_rng(seed).choice(n, size=max_items, replace=False))
    return ([records[int(i)] for i in keep],
            {"seed": seed, "n_source": n, "n_kept": int(max_items),
             "rows": [int(i) for i in keep]})


def load_corpus(source: dict, schema: str, fields: dict | None = None, max_items: int | None = None,
                base_dir: Path | str = ".", seed: int = 0) -> list[dict]:
    records = normalise(read_rows(source, base_dir), schema, fields)
    return sample_records(records, max_items, seed)[0]


def write_records(records: list[dict], path: Path | str, metadata: dict | None = None) -> None:
    import pyarrow as pa

    from stsflow.io.files import write_parquet

    write_parquet(pa.Table.from_pylist(records), path, metadata or {})


def read_records(path: Path | str) -> list[dict]:
    """The records of a materialised corpus (written by ``write_records``)."""
    from stsflow.io.files import read_table

    return read_table(path).to_pylist()
