"""Command line: `python -m fastalex info | bench | train | eval | prepare` (also the `fastalex` script)."""
from __future__ import annotations

import argparse
import json
import os
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
    every = list(bench.OPS) + ["conv", "model", "augment", "train"]
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
    work = [(c, n) for op in ops if op in bench.OPS for c in bench.cases(op, device, quick=args.quick)
            for n in names]
    if "conv" in ops:
        work += [(c, n) for c in bench.conv_cases(device, quick=args.quick) for n in names if n == "triton"]
    if "model" in ops:
        work += [(c, "fastalex") for c in bench.model_cases(device, quick=args.quick)]
    if "augment" in ops:
        work += [(c, "fastalex") for c in bench.augment_cases(device, quick=args.quick)]
    if "train" in ops:
        work += [("train", True), ("train", False)]  # preloaded synthetic data, then drawn by loader workers
    rows, ref_ms, extra = [], {}, {}
    for case, name in tqdm(work, desc="fastalex bench", file=sys.stderr):
        if case == "train":
            row, epoch = bench.measure_train_epoch(device, quick=args.quick, preload=name)
            rows.append(row)
            extra.setdefault("train_epoch", []).append(dict(epoch, preload=name))
        elif isinstance(case, bench.AugmentCase):
            rows.append(bench.measure_augment(case, device))
        elif isinstance(case, bench.ModelCase):
            rows.extend(bench.measure_model(case, device, refs))
        elif isinstance(case, bench.ConvCase):
            rows.extend(bench.measure_conv(case, name, device, matmul, ref_ms))
        else:
            rows.extend(bench.measure(case, name, device, copy, ref_ms, refs))
    table = bench.format_table(rows, bench.device_name(device), copy, matmul)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": bench.environment(), "device": bench.device_name(device), "copy_gbps": copy,
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
        bench.plot(rows, args.plot, f"fastalex bench on {bench.device_name(device)}")
        print(f"plot written to {args.plot}")
    return 0


def _train(args) -> int:
    from fastalex.training import TrainConfig, train

    fields = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    config = TrainConfig(**fields)
    try:
        result = train(config, resume=args.resume)
    except (ValueError, OSError) as e:  # bad options, data or checkpoint: a message, not a traceback
        print(f"fastalex train: error: {e}", file=sys.stderr)
        return 2
    return 130 if result["interrupted"] else 0


def _eval(args) -> int:
    from fastalex.evaluation import run_eval

    try:
        result = run_eval(args.checkpoint, args.data, ten_crop=args.ten_crop, batch_size=args.batch_size,
                          workers=args.workers, device=args.device, progress=not args.no_progress)
    except (ValueError, OSError) as e:
        print(f"fastalex eval: error: {e}", file=sys.stderr)
        return 2
    print(f"{result['checkpoint']} on {result['data']} ({result['images']} images, {result['crops']}): "
          f"top-1 error {100 * result['top1_err']:.2f}%, top-5 error {100 * result['top5_err']:.2f}%, "
          f"loss {result['loss']:.4f}"
          + (f"; {result['skipped']} unreadable images skipped" if result["skipped"] else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def _prepare(args) -> int:
    from fastalex.datasets import prepare_image_folder

    try:
        counts = prepare_image_folder(args.src, args.dst, size=args.size, num_workers=args.workers)
    except (ValueError, OSError) as e:
        print(f"fastalex prepare: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {counts['written']} images to {args.dst}; skipped {counts['skipped']} unreadable")
    return 0


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train AlexNet with the paper's recipe (default: a synthetic dataset)",
                       description="Train AlexNet: SGD (momentum 0.9, weight decay 5e-4), batch 128, lr 0.01 "
                                   "divided by 10 when the validation loss stops improving; random 224 crops of "
                                   "256 images with flips and PCA colour noise, on the device. Several GPUs: "
                                   "torchrun --nproc_per_node=N -m fastalex train ...")
    p.add_argument("--data", help="folder with train/ and val/ class folders (default: synthetic shapes, no download)")
    p.add_argument("--out", help="where checkpoints, metrics.csv/json and curves.png go (default runs/alexnet)")
    p.add_argument("--resume", help="continue from this checkpoint (e.g. runs/alexnet/checkpoint.pt)")
    p.add_argument("--epochs", type=int, help="default: 30 on a GPU, 3 on the CPU")
    p.add_argument("--batch-size", type=int, help="per process (default: 128 on a GPU, 32 on the CPU)")
    p.add_argument("--lr", type=float, help="initial learning rate (default 0.01)")
    p.add_argument("--momentum", type=float, help="default 0.9")
    p.add_argument("--weight-decay", type=float, help="default 5e-4")
    p.add_argument("--lr-factor", type=float, help="lr multiplier on a validation-loss plateau (default 0.1)")
    p.add_argument("--lr-patience", type=int, help="epochs without improvement before that (default 2)")
    p.add_argument("--variant", choices=["paper", "torchvision"], help="default paper")
    p.add_argument("--groups", type=int, choices=[1, 2], help="2: the paper's two towers (default 1)")
    p.add_argument("--init", choices=["kaiming", "paper", "default"],
                   help="kaiming (He et al., the default: learns at once), paper (N(0, 0.01), biases 1: learns late) "
                        "or torch's default")
    p.add_argument("--dropout", type=float, help="in the first two fully connected layers (default 0.5)")
    p.add_argument("--image-size", type=int, help="stored image size (default 256 on a GPU, 72 on the CPU)")
    p.add_argument("--crop-size", type=int, help="random crop size (default 224 on a GPU, 64 on the CPU)")
    p.add_argument("--flip", type=float, help="horizontal flip probability (default 0.5)")
    p.add_argument("--pca-std", type=float, help="PCA colour noise alphastd (default 0.1; 0 disables)")
    p.add_argument("--num-classes", type=int, help="synthetic dataset only (default 12)")
    p.add_argument("--train-images", type=int, help="synthetic training set size (default 12800 GPU / 1152 CPU)")
    p.add_argument("--val-images", type=int, help="synthetic validation set size (default 1280 GPU / 288 CPU)")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], help="autocast dtype (default bf16 on a GPU)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last inputs and weights (default: on a GPU)")
    p.add_argument("--workers", type=int, help="loader processes per GPU (default min(8, cores - 1); CPU 1)")
    p.add_argument("--preload", action=argparse.BooleanOptionalAction, default=None,
                   help="synthetic data: draw it once and keep it on the device (default); --no-preload draws "
                        "every image in the loader workers each epoch, as a folder's images are decoded")
    p.add_argument("--device", help="cuda, cuda:1, cpu (default cuda when available)")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--max-steps", type=int, help="stop (with a checkpoint) after this many steps")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bars")
    p.add_argument("--no-plot", dest="plot", action="store_false", default=None, help="no curves.png")
    p.set_defaults(func=_train)


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
    p.add_argument("--ops", help=f"comma-separated (default: all of {', '.join(OPS)}, conv, model, augment, train)")
    p.add_argument("--plot", help="draw the speed-ups to this PNG (needs matplotlib)")
    p.add_argument("--compare-compile", action="store_true", help="also time torch.compile of the torch code")
    p.add_argument("--quick", action="store_true", help="one small case per operator, to check that everything runs")
    p.set_defaults(func=_bench)
    _train_parser(sub)
    p = sub.add_parser("eval", help="top-1 / top-5 error of a trained checkpoint (centre crop or --ten-crop)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by fastalex train")
    p.add_argument("--data", help="folder whose val/ holds the class folders (default: the synthetic validation set "
                                  "the checkpoint was trained with)")
    p.add_argument("--ten-crop", action="store_true", help="average the softmax over the paper's ten crops")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, help="loader processes (default min(8, cores) on a GPU, 0 on the CPU)")
    p.add_argument("--device", help="default cuda when available")
    p.add_argument("--json", help="write the result to this file")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_eval)
    p = sub.add_parser("prepare", help="resize an image folder once: shorter side to 256, centre crop (the paper's step)")
    p.add_argument("src", help="source folder (e.g. with train/ and val/ class folders)")
    p.add_argument("dst", help="destination folder (same layout, JPEG)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: every core)")
    p.set_defaults(func=_prepare)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
