"""Benchmark harness: one copy-bandwidth measurement per session, torch timed in the same run, a
compact table at the end and every figure as JSON ($OUT/bench_lrn.json, else benchmarks/results/)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from fastalex import bench
from fastalex.kernels._common import tuned_configs

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
_ROWS: list[bench.Row] = []


@pytest.fixture(scope="session")
def device():
    return DEVICE


@pytest.fixture(scope="session")
def copy_gbps(device):
    return bench.copy_bandwidth_gbps(device)


@pytest.fixture(scope="session")
def torch_ms():
    """torch's timings by (case, op), shared by every backend measured against them."""
    return {}


@pytest.fixture
def record():
    return _ROWS.append


def _out_dir() -> Path:
    out = Path(os.environ.get("OUT") or Path(__file__).parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if not _ROWS:
        return
    copy = _ROWS[0].copy_gbps
    table = bench.format_table(_ROWS, copy, bench.device_name(DEVICE))
    terminalreporter.write_line("")
    terminalreporter.write_line(table)
    path = _out_dir() / "bench_lrn.json"
    path.write_text(json.dumps({"env": bench.environment(), "device": bench.device_name(DEVICE), "copy_gbps": copy,
                                "command": " ".join(sys.argv), "rows": [r.as_dict() for r in _ROWS],
                                "tuned_configs": {repr(k): repr(v) for k, v in tuned_configs().items()}}, indent=1))
    terminalreporter.write_line(f"figures written to {path}")
