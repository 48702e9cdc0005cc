"""Command line: `stsflow validate CONFIG`, `stsflow verify RESULTS`, `stsflow bench ...`,
`stsflow plan ...`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stsflow", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("validate", help="check a config file and print the problems")
    p.add_argument("config", type=Path)
    p.add_argument("--no-sources", action="store_true", help="skip reading local corpora")
    p = sub.add_parser("verify", help="re-hash a results folder against its manifest")
    p.add_argument("results", type=Path)
    p.add_argument("--manifest", type=Path, default=None)
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
            load(args.config, check_sources=not args.no_sources)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"{args.config}: valid")
        return 0
    from stsflow.io.manifest import verify

    problems = verify(args.results, args.manifest)
    for line in problems:
        print(line)
    n = len(problems)
    print(f"{args.results}: {'OK, every file matches the manifest' if not n else f'{n} problem(s)'}")
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main())
