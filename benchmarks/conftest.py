"""Benchmark harness: one copy-bandwidth measurement per session, torch timed in the same run, a
compact table at the end and every figure as JSON ($OUT/bench.json, else benchmarks/results/)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

import fastalex
from fastalex.bench import ops, report, timing
from fastalex.kernels._common import tuned_configs

BACKENDS = [b for b in (("triton", "cuda") if torch.cuda.is_available() else ("cpu",)) if b in fastalex.backends()]

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
_ROWS: list[report.Row] = []


@pytest.fixture(scope="session")
def device():
    return DEVICE


@pytest.fixture(scope="session")
def copy_gbps(device):
    return timing.copy_bandwidth_gbps(device)


@pytest.fixture(scope="session")
def matmul_tflops(device):
    return timing.matmul_tflops(device)


@pytest.fixture(scope="session")
def ref_ms():
    """The references' timings (eager torch, torch.compile) by (case, op, kind, ref), shared by every
    backend measured against them."""
    return {}


@pytest.fixture
def record():
    return _ROWS.extend


@pytest.fixture
def measure_case(benchmark, device, copy_gbps, ref_ms):
    """measure_case(case, backend, kind, refs): records the rows of `kind` ("fwd" or "fwd+bwd") against
    each reference for the summary table, and runs the same call under pytest-benchmark (host timing,
    for its own report; the table's figures are timing.time_ms's device timings)."""

    def run(case: ops.Case, backend: str, kind: str, refs: tuple[str, ...] = ("torch",)) -> None:
        rows = ops.measure(case, backend, device, copy_gbps, ref_ms, refs, kinds=(kind,))
        _ROWS.extend(rows)
        benchmark.extra_info.update(rows=[r.as_dict() for r in rows])
        x, grad = case.make(device)
        fn = dict(zip(("fwd", "fwd+bwd"), ops.fns(case, backend, x, grad)))[kind]

        def once():
            fn()
            timing.sync(device)

        benchmark.pedantic(once, rounds=5, iterations=1, warmup_rounds=1)

    return run


def _out_dir() -> Path:
    out = Path(os.environ.get("OUT") or Path(__file__).parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if not _ROWS:
        return
    copy = next((r.peak for r in _ROWS if r.unit == "GB/s"), None) or timing.copy_bandwidth_gbps(DEVICE)
    matmul = next((r.peak for r in _ROWS if r.unit == "TFLOP/s"), None)
    table = report.format_table(_ROWS, timing.device_name(DEVICE), copy, matmul)
    terminalreporter.write_line("")
    terminalreporter.write_line(table)
    path = _out_dir() / "bench.json"
    path.write_text(json.dumps({"env": timing.environment(), "device": timing.device_name(DEVICE), "copy_gbps": copy,
                                "matmul_tflops": matmul, "command": " ".join(sys.argv), "rows": [r.as_dict() for r in _ROWS],
                                "tuned_configs": {repr(k): repr(v) for k, v in tuned_configs().items()}}, indent=1))
    terminalreporter.write_line(f"figures written to {path}")
