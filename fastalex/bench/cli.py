"""The `fastalex bench` command: every operator, the convolutions, the whole model and the input
pipeline against torch on this device, as a table (and JSON, and a plot)."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys

# What --ops takes: the operators of fastalex.bench.ops.OPS, then the other families (kept here as
# names so that building the command line imports nothing heavy; a test checks they agree).
OPS = ("lrn", "max_pool", "relu_lrn_max_pool")
FAMILIES = ("conv", "model", "augment", "train")


def register_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when available")
    p.add_argument("--backends", help="comma-separated fastalex backends (default: all available for the device)")
    p.add_argument("--json", help="write every figure, the device and the versions to this file")
    p.add_argument("--ops", help=f"comma-separated (default: all of {', '.join(OPS + FAMILIES)})")
    p.add_argument("--plot", help="draw the speed-ups to this PNG (needs matplotlib)")
    p.add_argument("--compare-compile", action="store_true", help="also time torch.compile of the torch code")
    p.add_argument("--quick", action="store_true", help="one small case per operator, to check that everything runs")
    p.set_defaults(func=run_bench)


def _error(message: str) -> int:
    print(f"fastalex bench: error: {message}", file=sys.stderr)
    return 2


def backend_problem(name: str, device) -> str | None:
    """Why fastalex backend `name` cannot be measured on `device` (one line), or None."""
    from fastalex import _backends

    if name not in _backends.NAMES or name == "torch":
        return (f"unknown backend {name!r}" if name != "torch" else "'torch' is the reference, not a backend to "
                "measure") + f"; choose from {', '.join(n for n in _backends.NAMES if n != 'torch')}"
    why = _backends.unavailable_reason(name) or _backends._device_error(name, device)
    if why is None:
        return None
    if name == "triton" and device.type != "cuda" and _backends._triton_import_error() is None:
        return ("backend 'triton' needs a GPU, or TRITON_INTERPRET=1 to run its kernels in Triton's (slow) "
                "interpreter on the CPU")
    return f"backend {name!r} cannot run here: {why}"


def run_bench(args) -> int:
    import torch
    from tqdm import tqdm

    from fastalex import _backends
    from fastalex.bench import conv, model, ops, pipeline, timing

    if args.device == "cuda" and not torch.cuda.is_available():
        return _error("--device cuda: no CUDA device is visible here")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = [n for n in args.backends.split(",") if n] if args.backends else [
        n for n in _backends.backends() if n != "torch" and (n in ("triton", "cuda")) == (device.type == "cuda")]
    problems = [p for p in (backend_problem(n, device) for n in names) if p]
    if problems:
        return _error("; ".join(problems))
    every = list(OPS) + list(FAMILIES)
    chosen = args.ops.split(",") if args.ops else every
    unknown = [op for op in chosen if op not in every]
    if unknown:
        return _error(f"unknown op {', '.join(unknown)}; choose from {', '.join(every)}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return _error("--plot needs matplotlib: pip install matplotlib")
    if device.type == "cpu":
        print("No GPU in use: measuring the CPU backends at small sizes (batch 16).")
    if "conv" in chosen and device.type != "cuda":
        # The cpu backend runs torch's own convolution: there is nothing to compare on a CPU.
        print("conv: skipped on the CPU (the cpu backend runs torch's convolution; the Triton kernels need a GPU)")
        chosen.remove("conv")
    refs = ("torch", "torch.compile") if args.compare_compile else ("torch",)
    copy = timing.copy_bandwidth_gbps(device)
    matmul = timing.matmul_tflops(device) if "conv" in chosen else None
    work = [(c, n) for op in chosen if op in OPS for c in ops.cases(op, device, quick=args.quick)
            for n in names]
    if "conv" in chosen:
        work += [(c, n) for c in conv.conv_cases(device, quick=args.quick) for n in names if n == "triton"]
    if "model" in chosen:
        work += [(c, "fastalex") for c in model.model_cases(device, quick=args.quick)]
    if "augment" in chosen:
        work += [(c, "fastalex") for c in pipeline.augment_cases(device, quick=args.quick)]
    if "train" in chosen:
        work += [("train", True), ("train", False)]  # preloaded synthetic data, then drawn by loader workers
    rows, ref_ms, extra = [], {}, {}
    for case, name in (bar := tqdm(work, desc="fastalex bench", file=sys.stderr)):
        if case == "train":
            with _lines_above(bar):  # the training's own lines, printed above the bar rather than glued to it
                row, epoch = pipeline.measure_train_epoch(device, quick=args.quick, preload=name)
            rows.append(row)
            extra.setdefault("train_epoch", []).append(dict(epoch, preload=name))
        elif isinstance(case, pipeline.AugmentCase):
            rows.append(pipeline.measure_augment(case, device))
        elif isinstance(case, model.ModelCase):
            rows.extend(model.measure_model(case, device, refs))
        elif isinstance(case, conv.ConvCase):
            rows.extend(conv.measure_conv(case, name, device, matmul, ref_ms))
        else:
            rows.extend(ops.measure(case, name, device, copy, ref_ms, refs))
    _write_report(args, rows, device, copy, matmul, extra)
    return 0


def _write_report(args, rows, device, copy, matmul, extra) -> None:
    """The table (and the JSON, and the plot) of `rows`, with the conv tuner's choices."""
    from fastalex.bench import conv, report, timing

    table = report.format_table(rows, timing.device_name(device), copy, matmul)
    choices = conv.tuned_choices()
    if choices:
        extra["conv_tuned"] = choices
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": timing.environment(), "device": timing.device_name(device), "copy_gbps": copy,
                       "matmul_tflops": matmul, "command": " ".join(sys.argv), "rows": [r.as_dict() for r in rows],
                       **extra},
                      f, indent=1)
    print(table)
    for c in choices:
        print(f"conv tuner: {c['direction']:<5} {c['dtype']:<8} input {c['input']} x{c['batch']} weight {c['weight']}: "
              f"{c['choice']}")
    for e in extra.get("train_epoch", []):
        print(f"train epoch ({'preloaded' if e['preload'] else 'loader workers'}): {e['img_per_s']:.0f} img/s, "
              f"waited for data {100 * e['data_wait_frac']:.1f}% of the time")
    if any(r.op in ("augment", "train_epoch") for r in rows):
        print("augment rows: speed-up = the pipeline's img/s over the training step's; train_epoch rows: the "
              "fraction of the time not spent waiting for data")
    if args.plot:
        report.plot(rows, args.plot, f"fastalex bench on {timing.device_name(device)}")
        print(f"plot written to {args.plot}")


@contextlib.contextmanager
def _lines_above(bar):
    """What the block prints to stderr, written above tqdm's bar line by line (tqdm.write) instead of
    into the middle of it."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    finally:
        for line in buffer.getvalue().splitlines():
            if line.strip():
                bar.write(line, file=sys.stderr)
