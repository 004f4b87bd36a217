"""The `fastalex train` and `fastalex eval` commands: their options and what they print."""
from __future__ import annotations

import argparse
import ctypes
import json
import sys

from fastalex._checks import error_line
from fastalex.train.config import TrainConfig
from fastalex.train.evaluate import run_eval
from fastalex.train.loop import train

def register_train(p: argparse.ArgumentParser) -> None:
    # Options not typed stay out of the namespace (SUPPRESS): --resume compares exactly the options
    # the user gave with the saved run's, including one typed with its default value (--lr 0.01).
    p.argument_default = argparse.SUPPRESS
    p.description = ("Train AlexNet: SGD (momentum 0.9, weight decay 5e-4), batch 128, lr 0.01 divided by 10 "
                     "when the validation loss stops improving; random 224 crops of 256 images with flips and PCA "
                     "colour noise, on the device. Several GPUs: torchrun --nproc_per_node=N -m fastalex train ...")
    p.add_argument("--data", help="folder with train/ and val/ class folders (default: synthetic shapes, no download)")
    p.add_argument("--out", help="where checkpoints, metrics.csv/json and curves.png go (default runs/alexnet)")
    p.add_argument("--resume", help="continue from this checkpoint (e.g. runs/alexnet/checkpoint.pt)")
    p.add_argument("--epochs", type=int, help="default: 30 on a GPU, 6 on the CPU")
    p.add_argument("--batch-size", type=int, help="per process (default: 128 on a GPU, 32 on the CPU)")
    p.add_argument("--lr", type=float, help="initial learning rate (default 0.01 on a GPU, 0.005 on the CPU)")
    p.add_argument("--momentum", type=float, help="default 0.9")
    p.add_argument("--weight-decay", type=float, help="default 5e-4")
    p.add_argument("--lr-factor", type=float, help="lr multiplier on a validation-loss plateau (default 0.1)")
    p.add_argument("--lr-patience", type=int, help="epochs without improvement before that (default 2)")
    p.add_argument("--warmup-steps", type=int, help="raise the lr linearly to --lr over this many steps first "
                                                    "(default: 0 on a GPU, as the paper; 36 on the CPU)")
    p.add_argument("--variant", choices=["paper", "torchvision"], help="default paper")
    p.add_argument("--groups", type=int, choices=[1, 2], help="2: the paper's two towers (default 1)")
    p.add_argument("--init", choices=["kaiming", "paper", "default"],
                   help="kaiming (He et al., the default: learns at once), paper (N(0, 0.01), biases 1: learns late) "
                        "or torch's default")
    p.add_argument("--dropout", type=float, help="in the first two fully connected layers (default 0.5 on a GPU, "
                                                 "0 on the CPU)")
    p.add_argument("--image-size", type=int, help="stored image size (default 256 on a GPU, 72 on the CPU)")
    p.add_argument("--crop-size", type=int, help="random crop size (default 224 on a GPU, 64 on the CPU)")
    p.add_argument("--flip", type=float, help="horizontal flip probability (default 0.5)")
    p.add_argument("--pca-std", type=float, help="PCA colour noise alphastd (default 0.1; 0 disables)")
    p.add_argument("--num-classes", type=int, help="synthetic dataset only (default 12)")
    p.add_argument("--train-images", type=int, help="synthetic training set size (default 12800 GPU / 1152 CPU)")
    p.add_argument("--val-images", type=int, help="synthetic validation set size (default 1280 GPU / 288 CPU)")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], help="autocast dtype (default bf16 on a GPU)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                   help="channels_last inputs and weights (default: on a GPU)")
    p.add_argument("--workers", type=int, help="loader processes per GPU (default min(8, cores - 1); CPU 1)")
    p.add_argument("--preload", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                   help="synthetic data: draw it once and keep it on the device (default); --no-preload draws "
                        "every image in the loader workers each epoch, as a folder's images are decoded")
    p.add_argument("--device", help="cuda, cuda:1, cpu (default cuda when available)")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--max-steps", type=int, help="stop (with a checkpoint) after this many steps of this invocation "
                                                 "(with --resume: this many more)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=argparse.SUPPRESS,
                   help="no progress bars")
    p.add_argument("--no-plot", dest="plot", action="store_false", default=argparse.SUPPRESS, help="no curves.png")
    p.set_defaults(func=run_train)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve blocks up to 1 GiB from its heap and to keep what is freed there;
    returns whether it could (not glibc: False, nothing changed). Process-wide, hence done by the command,
    not by train().

    On the CPU every training step frees and allocates again the gradients of the fully connected layers
    and the optimizer's temporaries (about 440 MB at batch 32, 64 px). By default glibc hands each such
    block back to the kernel and takes fresh zeroed pages at the next step, one page fault per 4 kB:
    that was 45% of a step's CPU time (benchmarks/RESULTS.md)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def run_train(args) -> int:
    # Only the options typed on the command line are in args (register_train), and those are "given".
    fields = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    if str(getattr(args, "device", None) or ("cuda" if _cuda() else "cpu")).startswith("cpu"):
        keep_freed_memory()
    try:
        result = train(TrainConfig(**fields), resume=getattr(args, "resume", None), given=set(fields))
    except (ValueError, OSError) as e:  # bad options, data or checkpoint: a message, not a traceback
        print(error_line("train", e), file=sys.stderr)
        return getattr(e, "exit_code", 2)  # NonFiniteLoss: 3, told apart from bad options
    except KeyboardInterrupt as e:  # a second Ctrl-C (fastalex.train.signals.Aborted), or one before training
        print(f"fastalex train: {str(e) or 'aborted'}", file=sys.stderr)
        return 130
    return 130 if result["interrupted"] else 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def register_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by fastalex train")
    p.add_argument("--data", help="folder whose val/ holds the class folders (default: the synthetic validation set "
                                  "the checkpoint was trained with)")
    p.add_argument("--ten-crop", action="store_true", help="average the softmax over the paper's ten crops")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, help="loader processes (default min(8, cores) on a GPU, 0 on the CPU)")
    p.add_argument("--device", help="default cuda when available")
    p.add_argument("--json", help="write the result to this file")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_eval_command)


def run_eval_command(args) -> int:
    try:
        result = run_eval(args.checkpoint, args.data, ten_crop=args.ten_crop, batch_size=args.batch_size,
                          workers=args.workers, device=args.device, progress=not args.no_progress)
    except (ValueError, OSError) as e:
        print(error_line("eval", e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastalex eval: aborted", file=sys.stderr)
        return 130
    print(f"{result['checkpoint']} on {result['data']} ({result['images']} images, {result['crops']}): "
          f"top-1 error {100 * result['top1_err']:.2f}%, top-5 error {100 * result['top5_err']:.2f}%, "
          f"loss {result['loss']:.4f}"
          + (f"; {result['skipped']} unreadable images skipped" if result["skipped"] else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0
