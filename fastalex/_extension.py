"""Builds (once, cached) and loads the C++/CUDA extension in csrc/.

The extension is compiled just in time with torch.utils.cpp_extension and ninja on first use, into
a cache folder keyed by the torch version, the Python version and a hash of the sources and flags,
so an upgraded torch or an edited source gets a fresh build (no ABI mismatch) and an unchanged one
loads in well under a second.

- The sources are found inside the installed package (fastalex/_csrc, which a wheel ships), else at
  the top level of the checkout (csrc/, for an editable install).
- They are copied into the build folder and compiled from there, so a build does not depend on where
  the sources live: two checkouts or venvs with the same sources and torch share one build instead of
  rebuilding each other's (the build files would otherwise hold each one's paths).
- A finished build is loaded directly, without torch's build machinery; a compile says so on stderr
  (one line before, one after), since it takes tens of seconds.
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
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType

import torch

_PACKAGE = Path(__file__).resolve().parent
# A wheel carries the sources as package data (setup.py copies csrc/ in); a checkout has them at its
# top level. The package's own copy comes first: a site-packages/csrc would be some other project's.
_CSRC_CANDIDATES = (_PACKAGE / "_csrc", _PACKAGE.parent / "csrc")
CSRC = next((c for c in _CSRC_CANDIDATES if (c / "bindings.cpp").is_file()), _CSRC_CANDIDATES[0])
_CPU_SOURCES = ["bindings.cpp", "cpu/local_response_norm.cpp", "cpu/max_pool2d.cpp"]
_CUDA_SOURCES = ["cuda/local_response_norm.cu", "cuda/max_pool2d.cu"]
_HEADER_SUFFIXES = (".h", ".hpp", ".cuh", ".inc")
# -fopenmp: at::parallel_for is an inline OpenMP loop, serial without it. -fno-math-errno lets sqrt
# vectorize. -march=native: the build runs on the machine that loads it (the cache key holds the
# CPU's flags). torch adds the -std it needs (C++17 up to 2.12, C++20 after).
_CFLAGS = ["-O3", "-fno-math-errno", "-march=native", "-fopenmp"]
_LDFLAGS = ["-fopenmp"]
_CUDA_CFLAGS = ["-O3", "-lineinfo"]
# Written into a build folder once its module has been built and imported: from then on that module
# is loaded directly. Holds the module's file name (torch appends _v1 when a process rebuilds a name).
_MARKER = "fastalex-built"
_LIB_EXT = ".pyd" if sys.platform == "win32" else ".so"
# Printed before a build: 30-45 s on 2 idle cores; 65 s (CPU kernels) and 110 s (CPU and CUDA) were
# measured with other jobs on the same 2 cores (bindings.cpp alone is most of it: it compiles serially).
_BUILD_ESTIMATE = "about 30-60 s on 2 cores"


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


def _read_sources(csrc: Path, with_cuda: bool) -> dict[str, bytes]:
    """The files a build compiles and includes, by path relative to csrc (read once: the bytes hashed
    are the bytes copied into the build folder, even if a file is being edited meanwhile)."""
    sources = _CPU_SOURCES + (_CUDA_SOURCES if with_cuda else [])
    missing = [s for s in sources if not (csrc / s).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the C++/CUDA sources are missing: {csrc} has no {', '.join(missing)} (an installed fastalex "
            "has them in fastalex/_csrc, a checkout in csrc/ beside the package); reinstall fastalex")
    headers = sorted(p.relative_to(csrc).as_posix() for p in csrc.rglob("*")
                     if p.suffix in _HEADER_SUFFIXES and p.is_file())
    return {rel: (csrc / rel).read_bytes() for rel in sources + headers}


def _digest(files: dict[str, bytes]) -> str:
    """Content, flags, versions and CPU: never the sources' location, so that any copy of the same
    sources maps to the same build."""
    h = hashlib.sha256()
    for rel, data in files.items():
        h.update(rel.encode())
        h.update(data)
    h.update(repr((_CFLAGS, _LDFLAGS, _CUDA_CFLAGS, torch.__version__, torch.version.cuda, sys.version_info[:2],
                   os.environ.get("TORCH_CUDA_ARCH_LIST"), _cpu_flags())).encode())
    return h.hexdigest()[:12]


def _build_dir(name: str) -> Path:
    root = Path(os.environ.get("FASTALEX_BUILD_DIR", Path.home() / ".cache" / "fastalex"))
    return root / f"torch-{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}" / name


def _import_extension(path: Path) -> ModuleType:
    # What cpp_extension.load does once built; the module name is the file's, as compiled in.
    spec = importlib.util.spec_from_file_location(path.name[: -len(_LIB_EXT)], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_built(build_dir: Path) -> ModuleType | None:
    """The module of a finished build in build_dir, or None when there is none to load."""
    try:
        filename = (build_dir / _MARKER).read_text().strip()
    except OSError:
        return None
    path = build_dir / filename
    if not filename.endswith(_LIB_EXT) or "/" in filename or not path.is_file():
        return None
    try:
        return _import_extension(path)
    except ImportError:  # e.g. torch reinstalled under the same version: let ninja check and rebuild
        return None


def _copy_sources(files: dict[str, bytes], build_dir: Path) -> Path:
    """build_dir/csrc holding `files`: written to a temporary folder and renamed, so a reader never sees
    half a copy and two processes copying at once both end up with the same complete one."""
    dest = build_dir / "csrc"
    if dest.is_dir():  # the folder's name is the hash of these very files
        return dest
    tmp = Path(tempfile.mkdtemp(prefix=".csrc-", dir=build_dir))
    try:
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        tmp.chmod(0o755)  # mkdtemp's 0700 would lock others out of a shared FASTALEX_BUILD_DIR
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return dest


def _mark_built(build_dir: Path, module: ModuleType) -> None:
    tmp = build_dir / f".{_MARKER}.{os.getpid()}"
    tmp.write_text(Path(module.__file__).name + "\n")
    os.replace(tmp, build_dir / _MARKER)


def _say(message: str) -> None:
    sys.stdout.flush()  # what was printed before comes first, also when both go to one log file
    print(f"fastalex: {message}", file=sys.stderr, flush=True)


def _build(with_cuda: bool, kernels: str) -> tuple[ModuleType, str]:
    """Loads the finished build for the current sources, or compiles it first (`kernels` says what
    is compiled in, for the message)."""
    files = _read_sources(CSRC, with_cuda)
    name = f"fastalex_C_{'cuda' if with_cuda else 'cpu'}_{_digest(files)}"
    build_dir = _build_dir(name)
    module = _load_built(build_dir)
    if module is not None:
        return module, str(build_dir)

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

    build_dir.mkdir(parents=True, exist_ok=True)
    src = _copy_sources(files, build_dir)
    sources = [str(src / s) for s in _CPU_SOURCES]
    kwargs = dict(extra_cflags=list(_CFLAGS), extra_ldflags=list(_LDFLAGS), extra_include_paths=[str(src)])
    old_arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if with_cuda:
        cpp_extension.CUDA_HOME = cuda_home  # torch computed its own guess at import
        sources += [str(src / s) for s in _CUDA_SOURCES]
        kwargs["extra_cflags"].append("-DFASTALEX_WITH_CUDA")
        kwargs["extra_cuda_cflags"] = list(_CUDA_CFLAGS)
        if old_arch is None and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
    _say(f"building the C++/CUDA extension for torch {torch.__version__} with {kernels} "
         f"(first use, {_BUILD_ESTIMATE}) ...")
    start = time.monotonic()
    try:
        # cpp_extension holds a file lock in build_dir while it builds: a concurrent first use waits,
        # then finds the build done (its build file is the same, as the sources' paths are).
        module = cpp_extension.load(
            name=name, sources=sources, build_directory=str(build_dir), with_cuda=with_cuda,
            verbose=os.environ.get("FASTALEX_VERBOSE_BUILD", "0") not in ("", "0"), **kwargs)
    except BaseException:
        _say(f"the build failed after {time.monotonic() - start:.0f} s "
             "(`python -m fastalex info` prints the compiler's message)")
        raise
    finally:
        if old_arch is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
    _mark_built(build_dir, module)
    _say(f"built in {time.monotonic() - start:.0f} s; cached in {build_dir}")
    return module, str(build_dir)


def _error_text(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) < 20000 else text[:4000] + "\n...\n" + text[-12000:]


def status() -> BuildStatus:
    """Builds the extension on first call (tens of seconds), then returns the cached result."""
    global _status
    with _lock:
        if _status is not None:
            return _status
        st = BuildStatus()
        st.cuda_error = _why_no_cuda()
        if st.cuda_error is None:
            try:
                st.module, st.build_dir = _build(with_cuda=True, kernels="CPU and CUDA kernels")
                st.with_cuda = True
            except Exception as e:  # noqa: BLE001 - kept and reported by `python -m fastalex info`
                st.cuda_error = "the CUDA build failed:\n" + _error_text(e)
        if st.module is None:
            why = "the CUDA build failed" if st.cuda_error.startswith("the CUDA build failed") else st.cuda_error
            try:
                st.module, st.build_dir = _build(with_cuda=False, kernels=f"CPU kernels only [no CUDA: {why}]")
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
