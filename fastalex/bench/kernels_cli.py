"""The `fastalex kernels` command: the compiled-code report of fastalex.bench.compiled_code."""
from __future__ import annotations

import argparse


def register_kernels(p: argparse.ArgumentParser) -> None:
    # The report's own options on this subparser (a REMAINDER positional cannot take arguments that start
    # with "--", so `fastalex kernels --ops conv` failed as "unrecognized arguments").
    from fastalex.bench.kernel_report import add_arguments

    add_arguments(p)
    p.set_defaults(func=run_kernels)


def run_kernels(args) -> int:
    from fastalex.bench import kernel_report

    return kernel_report.run(args)
