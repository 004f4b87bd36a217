"""The `fastalex info` command: versions, the C++/CUDA extension's build and the backends that work here."""
from __future__ import annotations

import argparse
import sys


def _backend_list(text: str) -> list[str]:
    from fastalex._backends import NAMES

    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backend {', '.join(unknown)}; the backends are {', '.join(NAMES)}")
    return names


def register_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("--require", type=_backend_list, metavar="BACKENDS",
                   help="comma-separated backends that must be available (e.g. triton,cuda,cpu): exit 1 naming "
                        "those that are not")
    p.add_argument("--tuned", action="store_true",
                   help="also list the tuner's choices kept on disk for this GPU and these versions")
    p.set_defaults(func=run_info)


def print_tuned() -> None:
    """The tuning cache of this machine (fastalex/kernels/_tuning_cache.py): one line per launch key."""
    from fastalex.kernels import _tuning_cache

    cache = _tuning_cache.cache()
    if cache.path is None:
        print("tuning cache: off (FASTALEX_TUNING_CACHE=0)")
        return
    print(f"tuning cache: {cache.path} ({len(cache.entries)} choices; {cache.versions})")
    for key, fields in sorted(cache.entries.items()):
        print(f"  {key}: {fields}")


def run_info(args) -> int:
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
    available = _backends.backends()
    print(f"available: {', '.join(available)}")
    if args.tuned:
        print_tuned()
    missing = [name for name in args.require or () if name not in available]
    if missing:
        print("fastalex info: required backend(s) unavailable: " + "; ".join(
            f"{name} ({(_backends.unavailable_reason(name) or 'not available').splitlines()[0]})" for name in missing),
            file=sys.stderr)
        return 1
    return 0 if st.module is not None else 1
