"""Builds (once, cached) and loads the C++/CUDA extension in csrc/.

The extension is compiled just in time with torch.utils.cpp_extension and ninja on first use, into
a cache folder keyed by the torch version, the Python version and a hash of the sources and flags,
so an upgraded torch or an edited source gets a fresh build (no ABI mismatch) and an unchanged one
loads in well under a second.

- The CPU kernels always build (a C++17 compiler is all they need).
- The CUDA kernels are compiled in whenever torch is a CUDA build and nvcc is found, even with no
  GPU present (then for TORCH_CUDA_ARCH_LIST, default "8.0;9.0").
- If the CUDA build fails, the CPU-only build is tried; each failure is kept with the compiler's
  message, which `python -m fastalex info` prints. Nothing fails silently.

Environment: FASTALEX_BUILD_DIR (cache root, default ~/.cache/fastalex), FASTALEX_NO_CUDA=1 (skip
the CUDA kernels), FASTALEX_VERBOSE_BUILD=1 (show the compiler's output), CUDA_HOME.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import sys
import threading
from pathlib import Path
from types import ModuleType

import torch

CSRC = Path(__file__).resolve().parent.parent / "csrc"
_CPU_SOURCES = ["bindings.cpp", "cpu/local_response_norm.cpp", "cpu/max_pool2d.cpp"]
_CUDA_SOURCES = ["cuda/local_response_norm.cu", "cuda/max_pool2d.cu"]
# -fopenmp: at::parallel_for is an inline OpenMP loop, serial without it. -fno-math-errno lets sqrt
# vectorize. -march=native: the build runs on the machine that loads it (the cache key holds the
# CPU's flags). torch adds the -std it needs (C++17 up to 2.12, C++20 after).
_CFLAGS = ["-O3", "-fno-math-errno", "-march=native", "-fopenmp"]
_LDFLAGS = ["-fopenmp"]
_CUDA_CFLAGS = ["-O3", "-lineinfo"]


@dataclasses.dataclass
class BuildStatus:
    module: ModuleType | None = None
    with_cuda: bool = False
    cuda_error: str | None = None  # why the CUDA kernels are not in the module
    cpu_error: str | None = None  # why there is no module at all
    build_dir: str | None = None


_status: BuildStatus | None = None
_lock = threading.Lock()


def find_cuda_home() -> str | None:
    """The CUDA toolkit to build with: $CUDA_HOME, else the folder of the real nvcc on PATH.

    torch's own guess follows /usr/local/bin/nvcc to /usr/local even when that file is a wrapper
    script around /usr/local/cuda/bin/nvcc; this looks for a folder that has bin/nvcc and include/.
    """
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = [env] if env else []
    candidates.append("/usr/local/cuda")
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    for c in candidates:
        if c and (Path(c) / "bin" / "nvcc").exists() and (Path(c) / "include" / "cuda_runtime_api.h").exists():
            return c
    return None


def _why_no_cuda() -> str | None:
    if os.environ.get("FASTALEX_NO_CUDA", "0") not in ("", "0"):
        return "FASTALEX_NO_CUDA is set"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is not a CUDA build"
    if find_cuda_home() is None:
        return "nvcc not found (set CUDA_HOME to the CUDA toolkit)"
    return None


def _cpu_flags() -> str:
    """The CPU's feature flags: builds use -march=native, so a cached build must match the CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _digest(with_cuda: bool) -> str:
    h = hashlib.sha256()
    sources = _CPU_SOURCES + (_CUDA_SOURCES if with_cuda else [])
    headers = sorted(str(p.relative_to(CSRC)) for p in CSRC.rglob("*") if p.suffix in (".h", ".cuh"))
    for rel in sources + headers:
        h.update(rel.encode())
        h.update((CSRC / rel).read_bytes())
    h.update(repr((_CFLAGS, _LDFLAGS, _CUDA_CFLAGS, torch.__version__, torch.version.cuda, sys.version_info[:2],
                   os.environ.get("TORCH_CUDA_ARCH_LIST"), _cpu_flags())).encode())
    return h.hexdigest()[:12]


def _build(with_cuda: bool) -> tuple[ModuleType, str]:
    cuda_home = find_cuda_home()
    if with_cuda and "CUDA_HOME" not in os.environ:
        os.environ["CUDA_HOME"] = cuda_home  # before torch's import-time guess, which is wrong here
    # Importing cpp_extension logs a warning when no GPU is visible; building without one is intended.
    ext_log = logging.getLogger("torch.utils.cpp_extension")
    level = ext_log.level
    ext_log.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        ext_log.setLevel(level)

    digest = _digest(with_cuda)
    name = f"fastalex_C_{'cuda' if with_cuda else 'cpu'}_{digest}"
    root = Path(os.environ.get("FASTALEX_BUILD_DIR", Path.home() / ".cache" / "fastalex"))
    py = f"py{sys.version_info[0]}{sys.version_info[1]}"
    build_dir = root / f"torch-{torch.__version__}-{py}" / name
    build_dir.mkdir(parents=True, exist_ok=True)
    sources = [str(CSRC / s) for s in _CPU_SOURCES]
    kwargs = dict(extra_cflags=list(_CFLAGS), extra_ldflags=list(_LDFLAGS), extra_include_paths=[str(CSRC)])
    old_arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if with_cuda:
        cpp_extension.CUDA_HOME = cuda_home  # torch computed its own guess at import
        sources += [str(CSRC / s) for s in _CUDA_SOURCES]
        kwargs["extra_cflags"].append("-DFASTALEX_WITH_CUDA")
        kwargs["extra_cuda_cflags"] = list(_CUDA_CFLAGS)
        if old_arch is None and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
    try:
        module = cpp_extension.load(
            name=name, sources=sources, build_directory=str(build_dir), with_cuda=with_cuda,
            verbose=os.environ.get("FASTALEX_VERBOSE_BUILD", "0") not in ("", "0"), **kwargs)
    finally:
        if old_arch is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
    return module, str(build_dir)


def _error_text(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) < 20000 else text[:4000] + "\n...\n" + text[-12000:]


def status() -> BuildStatus:
    """Builds the extension on first call (minutes), then returns the cached result."""
    global _status
    with _lock:
        if _status is not None:
            return _status
        st = BuildStatus()
        st.cuda_error = _why_no_cuda()
        if st.cuda_error is None:
            try:
                st.module, st.build_dir = _build(with_cuda=True)
                st.with_cuda = True
            except Exception as e:  # noqa: BLE001 - kept and reported by `python -m fastalex info`
                st.cuda_error = "the CUDA build failed:\n" + _error_text(e)
        if st.module is None:
            try:
                st.module, st.build_dir = _build(with_cuda=False)
            except Exception as e:  # noqa: BLE001
                st.cpu_error = "the C++ build failed:\n" + _error_text(e)
        _status = st
        return st


def load() -> ModuleType:
    """The extension module; raises with the compiler's message if it could not be built."""
    st = status()
    if st.module is None:
        raise RuntimeError(f"fastalex: the C++ extension is unavailable: {st.cpu_error}")
    return st.module
