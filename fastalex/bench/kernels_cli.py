"""The `fastalex kernels` command: the compiled-code report of fastalex.bench.compiled_code."""
from __future__ import annotations

import argparse


def register_kernels(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs=argparse.REMAINDER, help="the report's options (fastalex kernels -- --help)")
    p.set_defaults(func=run_kernels)


def run_kernels(args) -> int:
    from fastalex.bench import compiled_code

    return compiled_code.main(args.args)
