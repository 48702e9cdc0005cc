"""Command line: `stsflow validate CONFIG`, `stsflow verify [RESULTS]`, `stsflow registry`,
`stsflow bench ...`, `stsflow plan ...`, `stsflow cards RESULTS ...`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stsflow", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("validate", help="check a config file and print the problems",
                       description="Check a config, or a config and its overlays merged in "
                       "order as snakemake --configfile merges them, and print every problem.")
    p.add_argument("config", type=Path, nargs="+")
    p.add_argument("--no-sources", action="store_true", help="skip reading local corpora")
    p = sub.add_parser("verify", help="check a results folder against its manifest: hashes, "
                       "readability, temporaries of killed jobs; says what to do")
    p.add_argument("results", type=Path, nargs="?", default=Path("results"),
                   help="the workflow's results folder (default: results)")
    p.add_argument("--manifest", type=Path, default=None)
    p = sub.add_parser("cards", help="print feature cards of a results folder in the terminal",
                       description="Feature cards (what a shifted SAE dimension is): every card "
                       "matching the filters; without --dim, the top --top of each set.")
    p.add_argument("results", type=Path, help="the workflow's results folder")
    p.add_argument("--model")
    p.add_argument("--sft")
    p.add_argument("--layer", type=int)
    p.add_argument("--sae")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", help="predicted, or true-<method>")
    p.add_argument("--dim", type=int, help="one SAE dimension")
    p.add_argument("--top", type=int, default=3, help="cards per set without --dim (default 3)")
    sub.add_parser("registry", help="the registered predictors, metrics and fine-tuning methods "
                   "(built in and plugins'), with what each declares")
    sub.add_parser("bench", help="extraction throughput and storage figures (see --help)",
                   add_help=False)
    sub.add_parser("plan", help="jobs, resources and GPU hours of a config (see --help)",
                   add_help=False)
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["plan"]:
        from stsflow.plan import main as plan

        return plan(argv[1:])
    if argv[:1] == ["bench"]:
        from stsflow.benchmark import main as bench

        return bench(argv[1:])
    args = parser.parse_args(argv)

    if args.cmd == "validate":
        from stsflow.config import load
        from stsflow.config.schema import ConfigError

        try:
            load(list(args.config), check_sources=not args.no_sources)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"{' + '.join(map(str, args.config))}: valid")
        return 0
    if args.cmd == "registry":
        print(registry_text())
        return 0
    if args.cmd == "cards":
        import polars as pl

        from stsflow.report.card_views import print_cards
        from stsflow.report.cards import load_cards

        try:
            cards = load_cards(args.results, model=args.model, sft=args.sft, layer=args.layer,
                               sae=args.sae, seed=args.seed, set=args.set, dim=args.dim)
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 1
        if args.dim is None:
            cards = cards.filter(pl.col("rank") <= args.top)
        if cards.height == 0:
            print("no card matches these filters", file=sys.stderr)
            return 1
        print_cards(cards)
        return 0
    from stsflow.io.files import DamagedFileError
    from stsflow.io.manifest import MANIFEST_NAME, advice, check

    try:
        problems = check(args.results, args.manifest)
    except FileNotFoundError as exc:
        print(f"{exc.filename or exc}: not found. The workflow writes "
              f"{args.results / MANIFEST_NAME} as its last job: run it to the end first",
              file=sys.stderr)
        return 1
    except DamagedFileError as exc:
        print(exc, file=sys.stderr)
        return 1
    for problem in problems:
        print(problem)
    n = len(problems)
    print(f"{args.results}: {'OK, every file matches the manifest' if not n else f'{n} problem(s)'}")
    for line in advice(args.results, problems):
        print(line)
    return 1 if n else 0


def registry_text() -> str:
    """What a config may name in finetune.methods, evaluate.metrics and report.primary.predictor:
    every registered entry (stsflow.plugins' included) with the facts it declares."""
    from stsflow import plugins
    from stsflow.evaluate.registry import metrics
    from stsflow.finetune.registry import methods
    from stsflow.scores import PREDICTORS

    lines = [f"plugins: {', '.join(plugins.load()) or 'none'}", "",
             "predictors (report.primary.predictor; <name>_oracle: on the true shift):"]
    for p in PREDICTORS.values():
        facts = [p.family, *(["oracle row"] if p.oracle else []),
                 *(["after fine-tuning only"] if p.post_training else []),
                 *([f"needs {', '.join(p.needs)}"] if p.needs else [])]
        lines.append(f"  {p.name:<20} {p.about} ({'; '.join(facts)})")
    lines += ["", "metrics (evaluate.metrics):"]
    for m in metrics().values():
        lines.append(f"  {m.name:<20} {m.kind}, {'higher' if m.higher_is_better else 'lower'} "
                     "is better")
    lines += ["", "fine-tuning methods (finetune.methods):"]
    for m in methods().values():
        facts = [f"plans as {m.plan_as}", *(["saves an adapter"] if m.adapter else []),
                 *(["shards over finetune.processes"] if m.shards else []),
                 *([f"reads finetune.{m.section}"] if m.section else []),
                 *([f"variants {m.name}-{m.variant.describe}"] if m.variant else []),
                 *(["own training loop"] if m.train else []),
                 *(["not servable by vLLM"] if not m.vllm else [])]
        lines.append(f"  {m.name:<20} {m.about} ({'; '.join(facts)})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
