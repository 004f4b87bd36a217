"""Command line: `python -m fastalex info | bench | kernels | train | eval | prepare` (also the `fastalex`
script). Only the chosen command's module is imported, so `fastalex --help` and `fastalex prepare` do
not load the kernels."""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, function that adds its arguments and sets func, one-line help)
COMMANDS = {
    "info": ("fastalex.info", "register_info", "versions, the extension's build status and the available backends"),
    "bench": ("fastalex.bench.cli", "register_bench", "time fastalex's operators against torch on this device"),
    "kernels": ("fastalex.bench.kernels_cli", "register_kernels",
                "compile every Triton kernel config for a GPU target and report registers, spills, load widths "
                "and SASS per loop step (no GPU needed)"),
    "train": ("fastalex.train.cli", "register_train",
              "train AlexNet with the paper's recipe (default: a synthetic dataset)"),
    "eval": ("fastalex.train.cli", "register_eval",
             "top-1 / top-5 error of a trained checkpoint (centre crop or --ten-crop)"),
    "prepare": ("fastalex.data.prepare", "register_prepare",
                "resize an image folder once: shorter side to 256, centre crop (the paper's step)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="fastalex", description="fastalex: fast AlexNet operators, their "
                                     "benchmarks, and the paper's training recipe.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, register, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            getattr(importlib.import_module(module), register)(p)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
