"""The embedded default's data written as JSON lines (the same seed gives the same bytes)."""

from __future__ import annotations

import json
from pathlib import Path

from stsflow.data.builtin.common import DOMAINS
from stsflow.data.builtin.items import domain_items
from stsflow.data.builtin.math_sft import sft_math

# ----------------------------------------------------------------------------------------------
# Files

def _write_jsonl(records: list[dict], path: Path) -> None:
    text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)
    path.write_bytes(text.encode("utf-8"))


def write_default_data(outdir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write the default data set as JSON lines; returns {"sft_math" | "<domain>.test" | "<domain>.demos": path}."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"sft_math": outdir / "sft_math.jsonl"}
    _write_jsonl(sft_math(400, seed), paths["sft_math"])
    for name in DOMAINS:
        test, demos = domain_items(name, seed=seed)
        for split, recs in (("test", test), ("demos", demos)):
            paths[f"{name}.{split}"] = outdir / f"{name}.{split}.jsonl"
            _write_jsonl(recs, paths[f"{name}.{split}"])
    return paths
