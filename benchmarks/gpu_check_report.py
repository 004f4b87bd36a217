"""benchmarks/gpu_check.sh's bookkeeping: each stage's result appended to $OUT/gpu_check.json as it
finishes (rewritten whole, so the file is valid JSON after every stage and a timeout keeps what ran),
and the compact table printed last.

    python benchmarks/gpu_check_report.py facts      (stage 0: the GPU, the versions; exit 3 if torch sees no GPU)
    python benchmarks/gpu_check_report.py record OUT STAGE NAME STATUS SECONDS [LOG]
    python benchmarks/gpu_check_report.py table OUT

Standard library only: it must work before and after the install stage.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _load(out: Path) -> dict:
    path = out / "gpu_check.json"
    if path.exists():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    return {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "stages": []}


def _tail(log: str | None, lines: int = 15) -> list[str]:
    if not log or not os.path.exists(log):
        return []
    with open(log, errors="replace") as f:
        return [line.rstrip("\n") for line in f.readlines()[-lines:]]


def record(out: Path, stage: str, name: str, status: str, seconds: str, log: str | None = None) -> None:
    data = _load(out)
    entry = {"stage": stage, "name": name, "status": status, "seconds": int(seconds), "log": log,
             "tail": _tail(log)}
    bench = out / f"bench-{name}" / "bench.json"
    if bench.exists():
        try:
            entry["bench"] = str(bench)
            entry["rows"] = len(json.loads(bench.read_text()).get("rows", []))
        except ValueError:
            pass
    data["stages"].append(entry)
    tmp = out / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(out / "gpu_check.json")


def _bench_rows(path: str) -> list[dict]:
    try:
        return json.loads(Path(path).read_text()).get("rows", [])
    except (OSError, ValueError):
        return []


def table(out: Path) -> str:
    data = _load(out)
    lines = ["== gpu_check summary (full figures: $OUT/gpu_check.json, bench-*/bench.json, the stage logs)",
             f"{'stage':<6} {'name':<18} {'status':<10} {'s':>5}"]
    for s in data["stages"]:
        lines.append(f"{s['stage']:<6} {s['name']:<18} {s['status']:<10} {s['seconds']:>5}")
    rows = [r for s in data["stages"] if s.get("bench") for r in _bench_rows(s["bench"])]
    if rows:
        lines += ["", f"{'op':<24} {'case':<36} {'backend':<16} {'ms':>8} {'ref':<14} {'ref ms':>8} {'speedup':>7}"]
        for r in rows:
            lines.append(f"{r['op']:<24} {r['case'][:36]:<36} {r['backend']:<16} {r['ms']:>8.3f} {r['ref']:<14} "
                         f"{r['ref_ms']:>8.3f} {r['speedup']:>6.2f}x" + (" ~" if r.get("noisy") else ""))
    return "\n".join(lines)


def facts() -> int:
    query = "name,memory.total,driver_version,clocks.max.sm,clocks.max.mem,power.limit"
    print(subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv"], capture_output=True,
                         text=True).stdout.strip())
    print(f"cpu cores: {os.cpu_count()}")
    import torch
    import triton

    print(f"python {sys.version.split()[0]}; torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
          f"{torch.backends.cudnn.version()}); triton {triton.__version__}")
    if not torch.cuda.is_available():
        print("torch sees no GPU", file=sys.stderr)
        return 3
    print(f"torch sees {torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name()}, capability "
          f"{torch.cuda.get_device_capability()}")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["facts"]:
        return facts()
    if argv[:1] == ["record"] and len(argv) in (6, 7):
        record(Path(argv[1]), *argv[2:])
        return 0
    if argv[:1] == ["table"] and len(argv) == 2:
        print(table(Path(argv[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
