"""The C++/CUDA extension's build: always the CPU kernels, the CUDA kernels wherever nvcc and a CUDA
torch are, a failed build reported with the compiler's message, and `python -m fastalex info`."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastalex import __main__ as cli
from fastalex import _backends, _extension


def test_cpu_kernels_built():
    st = _extension.status()
    assert st.module is not None, st.cpu_error
    assert hasattr(st.module, "lrn_forward") and hasattr(st.module, "lrn_backward")
    assert st.build_dir and f"torch-{torch.__version__}" in st.build_dir  # one cache per torch: no ABI mix
    # Compiled from its own copy of the sources (position-independent; tests/test_packaging.py), and
    # marked finished, so that later processes load it directly.
    assert (Path(st.build_dir) / "csrc" / "bindings.cpp").is_file()
    assert (Path(st.build_dir) / (Path(st.build_dir) / "fastalex-built").read_text().strip()).is_file()


@pytest.mark.skipif(torch.version.cuda is None or _extension.find_cuda_home() is None,
                    reason="needs a CUDA build of torch and nvcc")
def test_cuda_kernels_compile_without_a_gpu():
    st = _extension.status()
    assert st.with_cuda, st.cuda_error
    assert st.module.with_cuda is True


def test_binding_checks_its_tensors():
    ext = _extension.load()
    x = torch.randn(2, 3, 5)
    with pytest.raises(RuntimeError, match="output has shape"):
        ext.lrn_forward(x, torch.empty(2, 3, 4), 3, 1e-4, 0.75, 1.0)
    with pytest.raises(RuntimeError, match="output has dtype"):
        ext.lrn_forward(x, torch.empty(2, 3, 5, dtype=torch.float64), 3, 1e-4, 0.75, 1.0)
    with pytest.raises(RuntimeError, match=r"must be an \(N, C, S\) view"):
        ext.lrn_forward(x.view(2, 3, 5, 1), torch.empty(2, 3, 5, 1), 3, 1e-4, 0.75, 1.0)
    with pytest.raises(RuntimeError, match="dtype must be floating point"):
        ext.lrn_forward(x.long(), torch.empty(2, 3, 5).long(), 3, 1e-4, 0.75, 1.0)
    with pytest.raises(RuntimeError, match="size must be in"):
        ext.lrn_forward(x, torch.empty_like(x), 0, 1e-4, 0.75, 1.0)
    with pytest.raises(RuntimeError, match="size must be in"):
        ext.lrn_forward(x, torch.empty_like(x), 2**31, 1e-4, 0.75, 1.0)


def test_failed_build_is_reported(tmp_path, monkeypatch, capsys):
    """A compiler error leaves the backend out of backends() and `info` prints the compiler's message."""
    broken = tmp_path / "csrc"
    shutil.copytree(_extension.CSRC, broken)
    (broken / "bindings.cpp").write_text('#error "deliberately broken for a test"\n')
    monkeypatch.setattr(_extension, "CSRC", broken)
    monkeypatch.setattr(_extension, "_status", None)
    monkeypatch.setenv("FASTALEX_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("FASTALEX_NO_CUDA", "1")
    st = _extension.status()
    assert st.module is None
    assert "deliberately broken for a test" in st.cpu_error
    assert "FASTALEX_NO_CUDA" in st.cuda_error
    assert "cpu" not in _backends.backends()
    with pytest.raises(RuntimeError, match="C\\+\\+ extension is unavailable"):
        _extension.load()
    assert cli.main(["info"]) == 1
    captured = capsys.readouterr()
    out = captured.out
    assert "backend cpu     unavailable: the C++ build failed" in out
    assert "deliberately broken for a test" in out
    # The attempt said what it was doing, once, and how it ended.
    assert captured.err.count("fastalex: building the C++/CUDA extension for torch") == 1, captured.err
    assert "fastalex: the build failed after" in captured.err
    assert not list((tmp_path / "build").rglob("fastalex-built"))  # a failed build is not marked as finished


def test_info_command():
    out = subprocess.run([sys.executable, "-m", "fastalex", "info"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    for line in ("extension CPU kernels: built", "backend cpu     available", "backend torch   available"):
        assert line in out.stdout
    assert "extension CUDA kernels:" in out.stdout
    assert "available: " in out.stdout


def test_bench_command_cpu(tmp_path):
    """The main job runs on a CPU-only machine, says so, and writes its figures."""
    if torch.cuda.is_available():
        pytest.skip("covered by benchmarks/gpu_check.sh on a GPU")
    path = tmp_path / "bench.json"
    png = tmp_path / "bench.png"
    out = subprocess.run([sys.executable, "-m", "fastalex", "bench", "--json", str(path), "--plot", str(png), "--quick"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No GPU in use" in out.stdout
    import json

    data = json.loads(path.read_text())
    assert data["rows"] and all(r["ms"] > 0 and r["ref_ms"] > 0 for r in data["rows"])
    assert {r["op"] for r in data["rows"]} == {f"{op}_{kind}" for op in ("lrn", "max_pool", "relu_lrn_max_pool")
                                               for kind in ("fwd", "fwd+bwd")} | {"alexnet_inference",
                                                                                  "alexnet_train_step", "augment",
                                                                                  "train_epoch"}
    assert len(data["train_epoch"]) == 2 and "waited for data" in out.stdout
    assert "conv: skipped on the CPU" in out.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_command_rejects_an_unknown_op():
    out = subprocess.run([sys.executable, "-m", "fastalex", "bench", "--ops", "lrn,conv9"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 2
    assert "fastalex bench: error: unknown op conv9; choose from lrn, max_pool, relu_lrn_max_pool, conv, model" in out.stderr
