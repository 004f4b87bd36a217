"""The `fastalex bench` command: every operator, the convolutions, the whole model and the input
pipeline against torch on this device, as a table (and JSON, and a plot)."""
from __future__ import annotations

import argparse
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


def run_bench(args) -> int:
    import torch
    from tqdm import tqdm

    from fastalex import _backends
    from fastalex.bench import conv, model, ops, pipeline, report, timing

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        print("No GPU in use: measuring the CPU backends at small sizes (batch 16).")
    names = args.backends.split(",") if args.backends else [
        n for n in _backends.backends() if n != "torch" and (n in ("triton", "cuda")) == (device.type == "cuda")]
    every = list(OPS) + list(FAMILIES)
    chosen = args.ops.split(",") if args.ops else every
    unknown = [op for op in chosen if op not in every]
    if unknown:
        print(f"fastalex bench: unknown op {', '.join(unknown)}; choose from {', '.join(every)}", file=sys.stderr)
        return 2
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
    for case, name in tqdm(work, desc="fastalex bench", file=sys.stderr):
        if case == "train":
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
    table = report.format_table(rows, timing.device_name(device), copy, matmul)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": timing.environment(), "device": timing.device_name(device), "copy_gbps": copy,
                       "matmul_tflops": matmul, "command": " ".join(sys.argv), "rows": [r.as_dict() for r in rows],
                       **extra},
                      f, indent=1)
    print(table)
    for e in extra.get("train_epoch", []):
        print(f"train epoch ({'preloaded' if e['preload'] else 'loader workers'}): {e['img_per_s']:.0f} img/s, "
              f"waited for data {100 * e['data_wait_frac']:.1f}% of the time")
    if any(r.op in ("augment", "train_epoch") for r in rows):
        print("augment rows: speed-up = the pipeline's img/s over the training step's; train_epoch rows: the "
              "fraction of the time not spent waiting for data")
    if args.plot:
        report.plot(rows, args.plot, f"fastalex bench on {timing.device_name(device)}")
        print(f"plot written to {args.plot}")
    return 0
