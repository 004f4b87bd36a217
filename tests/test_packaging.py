"""The extension's sources travel with the package, and builds are shared by every copy of the same
sources: a checkout and an installed wheel (or two checkouts, or two venvs) with the same torch load
one cached build instead of rebuilding each other's. (.ci/run builds a wheel and checks it in a
second venv.)"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fastalex import _extension

# Loads the extension in a fresh process whose cpp_extension.load records its calls: a cached build
# must load without it (without compiling, and without even running ninja).
_LOAD_AND_REPORT = r"""
import json
import logging

logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # its no-GPU warning at import
import torch.utils.cpp_extension as cpp_extension

calls = []
real_load = cpp_extension.load


def load(*args, **kwargs):
    calls.append(kwargs["sources"])
    return real_load(*args, **kwargs)


cpp_extension.load = load
import fastalex
from fastalex import _extension

st = _extension.status()
print(json.dumps({"package": fastalex.__file__, "csrc": str(_extension.CSRC), "build_dir": st.build_dir,
                  "error": st.cpu_error, "ok": st.module is not None and hasattr(st.module, "lrn_forward"),
                  "compiled": calls}))
"""


def _copy_package(dest: Path, layout: str) -> Path:
    """A copy of fastalex with its sources, laid out as a checkout (csrc/ beside the package) or as an
    installed wheel (the sources inside the package, as fastalex/_csrc)."""
    ignore = shutil.ignore_patterns("__pycache__", "_csrc")
    shutil.copytree(_extension._PACKAGE, dest / "fastalex", ignore=ignore)
    csrc = dest / "csrc" if layout == "checkout" else dest / "fastalex" / "_csrc"
    shutil.copytree(_extension.CSRC, csrc, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _run(copy: Path, build_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(copy), FASTALEX_BUILD_DIR=str(build_root), FASTALEX_NO_CUDA="1")
    # Run from build_root's parent, not the repository, so that `import fastalex` finds the copy.
    return subprocess.run([sys.executable, *args], cwd=build_root.parent, env=env, capture_output=True, text=True,
                          timeout=900)


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_two_copies_share_one_build(tmp_path):
    """Two copies of the package, one laid out as a checkout and one as an installed wheel, start at
    once on an empty cache: one compile serves both, and later processes of either load it without
    compiling or writing anything."""
    checkout = _copy_package(tmp_path / "checkout", "checkout")
    wheel = _copy_package(tmp_path / "wheel", "wheel")
    root = tmp_path / "build"

    # First use, concurrently: the build folder's file lock serializes them, and the second finds the
    # first's build up to date because both compile the same copy of the sources at the same paths.
    with ThreadPoolExecutor(2) as pool:
        info = pool.submit(_run, checkout, root, "-m", "fastalex", "info")
        first = pool.submit(_run, wheel, root, "-c", _LOAD_AND_REPORT)
        info, first = info.result(), first.result()
    assert info.returncode == 0, info.stdout + info.stderr
    assert "backend cpu     available" in info.stdout
    assert first.returncode == 0, first.stdout + first.stderr
    first_report = json.loads(first.stdout.splitlines()[-1])
    assert first_report["ok"], first_report["error"]
    build_dir = Path(first_report["build_dir"])
    assert f"extension build dir: {build_dir}" in info.stdout  # one folder for both copies
    assert [p.name for p in root.glob("*/*")] == [build_dir.name]
    # The build was announced (by whichever process compiled), with the torch version and the kernels.
    stderr = info.stderr + first.stderr
    assert "fastalex: building the C++/CUDA extension for torch" in stderr
    assert "with CPU kernels only [no CUDA: FASTALEX_NO_CUDA is set] (first use," in stderr
    assert "fastalex: built in " in stderr
    # Compiled from the copy in the build folder, each object once: the other process did not rebuild.
    for sources in first_report["compiled"]:
        assert all(Path(s).is_relative_to(build_dir / "csrc") for s in sources), sources
    log = [line.split("\t")[3] for line in (build_dir / ".ninja_log").read_text().splitlines()[1:]]
    assert sorted(log) == sorted(set(log)) and len(log) == len(_extension._CPU_SOURCES) + 1, log

    # Cached: each copy loads the shared build without calling cpp_extension.load, prints nothing and
    # leaves every file of the build folder untouched.
    before = _files(root)
    for copy, csrc in ((checkout, checkout / "csrc"), (wheel, wheel / "fastalex" / "_csrc")):
        out = _run(copy, root, "-c", _LOAD_AND_REPORT)
        assert out.returncode == 0, out.stdout + out.stderr
        report = json.loads(out.stdout.splitlines()[-1])
        assert report["package"] == str(copy / "fastalex" / "__init__.py")
        assert report["csrc"] == str(csrc)  # each found its own sources
        assert report["ok"] and report["build_dir"] == str(build_dir)
        assert report["compiled"] == []
        assert "fastalex:" not in out.stderr, out.stderr
    assert _files(root) == before


def test_missing_sources_are_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(_extension, "CSRC", tmp_path / "nowhere")
    monkeypatch.setattr(_extension, "_status", None)
    monkeypatch.setenv("FASTALEX_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("FASTALEX_NO_CUDA", "1")
    st = _extension.status()
    assert st.module is None
    assert f"the C++/CUDA sources are missing: {tmp_path / 'nowhere'} has no bindings.cpp," in st.cpu_error
    assert "reinstall fastalex" in st.cpu_error
    assert not (tmp_path / "build").exists()  # nothing to build: no empty cache folder either


def test_build_key_ignores_where_the_sources_are(tmp_path):
    """Same sources at another path: same build folder; one byte changed: another."""
    copy = tmp_path / "csrc"
    shutil.copytree(_extension.CSRC, copy)
    here = _extension._read_sources(_extension.CSRC, with_cuda=False)
    there = _extension._read_sources(copy, with_cuda=False)
    assert _extension._digest(here) == _extension._digest(there)
    assert {"bindings.cpp", "local_response_norm.h", "cpu/launchers.h"} <= set(there)
    with open(copy / "max_pool2d.h", "a") as f:
        f.write("\n")
    assert _extension._digest(_extension._read_sources(copy, with_cuda=False)) != _extension._digest(here)


def test_sources_are_copied_atomically(tmp_path):
    files = _extension._read_sources(_extension.CSRC, with_cuda=True)
    src = _extension._copy_sources(files, tmp_path)
    assert src == tmp_path / "csrc"
    assert {str(p.relative_to(src)) for p in src.rglob("*") if p.is_file()} == set(files)
    assert all((src / rel).read_bytes() == data for rel, data in files.items())
    # A second copy (another process, later) keeps the first and leaves no temporary folder behind.
    (src / "bindings.cpp").write_bytes(b"// the first copy\n")
    assert _extension._copy_sources(files, tmp_path) == src
    assert (src / "bindings.cpp").read_bytes() == b"// the first copy\n"
    assert [p.name for p in tmp_path.iterdir()] == ["csrc"]


def test_sources_copy_race(tmp_path, monkeypatch):
    """Another process's copy lands between the check and the rename: it is kept, and this one's goes."""
    files = _extension._read_sources(_extension.CSRC, with_cuda=False)
    real_rename = os.rename

    def rename_after_another_process(src, dst):
        shutil.copytree(src, dst)
        (Path(dst) / "other-process").write_text("")
        real_rename(src, dst)  # raises: dst exists and is not empty

    monkeypatch.setattr(os, "rename", rename_after_another_process)
    src = _extension._copy_sources(files, tmp_path)
    assert (src / "other-process").exists() and (src / "bindings.cpp").read_bytes() == files["bindings.cpp"]
    assert [p.name for p in tmp_path.iterdir()] == ["csrc"]
