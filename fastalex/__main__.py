"""Command line: `python -m fastalex info` and `python -m fastalex bench` (also the `fastalex` script)."""
from __future__ import annotations

import argparse
import json
import sys


def _info(args) -> int:
    import torch

    from fastalex import __version__, _backends, _extension
    from fastalex.kernels._common import interpreting

    print(f"fastalex {__version__}; torch {torch.__version__} (CUDA {torch.version.cuda}); python {sys.version.split()[0]}")
    try:
        import triton

        print(f"triton {triton.__version__}{' (interpreter: TRITON_INTERPRET=1)' if interpreting() else ''}")
    except Exception as e:  # noqa: BLE001
        print(f"triton: not importable ({e})")
    print(f"CUDA devices: {torch.cuda.device_count()}"
          + (f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else ""))
    st = _extension.status()
    print(f"extension build dir: {st.build_dir}")
    print(f"extension CPU kernels: {'built' if st.module is not None else 'FAILED'}")
    print(f"extension CUDA kernels: {'built' if st.with_cuda else 'not built'}")
    for name in _backends.NAMES:
        why = _backends.unavailable_reason(name)
        print(f"backend {name:<7} {'available' if why is None else 'unavailable: ' + why}")
    if st.cuda_error and not st.with_cuda:
        print(f"\nwhy the CUDA kernels are not built:\n{st.cuda_error}")
    print(f"available: {', '.join(_backends.backends())}")
    return 0 if st.module is not None else 1


def _bench(args) -> int:
    import torch
    from tqdm import tqdm

    from fastalex import _backends, bench

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        print("No GPU in use: measuring the CPU backends at small sizes (batch 16).")
    names = args.backends.split(",") if args.backends else [
        n for n in _backends.backends() if n != "torch" and (n in ("triton", "cuda")) == (device.type == "cuda")]
    every = list(bench.OPS) + ["conv", "model"]
    ops = args.ops.split(",") if args.ops else every
    unknown = [op for op in ops if op not in every]
    if unknown:
        print(f"fastalex bench: unknown op {', '.join(unknown)}; choose from {', '.join(every)}", file=sys.stderr)
        return 2
    if "conv" in ops and device.type != "cuda":
        # The cpu backend runs torch's own convolution: there is nothing to compare on a CPU.
        print("conv: skipped on the CPU (the cpu backend runs torch's convolution; the Triton kernels need a GPU)")
        ops.remove("conv")
    refs = ("torch", "torch.compile") if args.compare_compile else ("torch",)
    copy = bench.copy_bandwidth_gbps(device)
    matmul = bench.matmul_tflops(device) if "conv" in ops else None
    work = [(c, n) for op in ops if op not in ("conv", "model") for c in bench.cases(op, device, quick=args.quick)
            for n in names]
    if "conv" in ops:
        work += [(c, n) for c in bench.conv_cases(device, quick=args.quick) for n in names if n == "triton"]
    if "model" in ops:
        work += [(c, "fastalex") for c in bench.model_cases(device, quick=args.quick)]
    rows, ref_ms = [], {}
    for case, name in tqdm(work, desc="fastalex bench", file=sys.stderr):
        if isinstance(case, bench.ModelCase):
            rows.extend(bench.measure_model(case, device, refs))
        elif isinstance(case, bench.ConvCase):
            rows.extend(bench.measure_conv(case, name, device, matmul, ref_ms))
        else:
            rows.extend(bench.measure(case, name, device, copy, ref_ms, refs))
    table = bench.format_table(rows, bench.device_name(device), copy, matmul)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": bench.environment(), "device": bench.device_name(device), "copy_gbps": copy,
                       "matmul_tflops": matmul, "command": " ".join(sys.argv), "rows": [r.as_dict() for r in rows]},
                      f, indent=1)
    print(table)
    if args.plot:
        bench.plot(rows, args.plot, f"fastalex bench on {bench.device_name(device)}")
        print(f"plot written to {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from fastalex.bench import OPS

    parser = argparse.ArgumentParser(prog="fastalex", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="versions, the extension's build status and the available backends")
    p.set_defaults(func=_info)
    p = sub.add_parser("bench", help="time fastalex's operators against torch on this device")
    p.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when available")
    p.add_argument("--backends", help="comma-separated fastalex backends (default: all available for the device)")
    p.add_argument("--json", help="write every figure, the device and the versions to this file")
    p.add_argument("--ops", help=f"comma-separated (default: all of {', '.join(OPS)}, conv, model)")
    p.add_argument("--plot", help="draw the speed-ups to this PNG (needs matplotlib)")
    p.add_argument("--compare-compile", action="store_true", help="also time torch.compile of the torch code")
    p.add_argument("--quick", action="store_true", help="one small case per operator, to check that everything runs")
    p.set_defaults(func=_bench)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
