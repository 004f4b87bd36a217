"""The gates of the compiled-code report (fastalex/bench/kernel_report.py): which rows break one, and how
benchmarks/KERNELS.md's gate table starts."""
from __future__ import annotations

GATES_HEADER = "| triton | rows | compiled | failed | default rows spilling | defaults that cannot launch |"


def gate_failures(report: dict) -> dict[str, list[dict]]:
    """The rows that break a gate: failed compiles; default rows that spill or cannot launch."""
    rows = report["rows"]
    return dict(failed=[r for r in rows if not r["ok"]],
                spilling=[r for r in rows if r["ok"] and r["default"] and r["spill_bytes"] > 0],
                unlaunchable=[r for r in rows if r["ok"] and r["default"] and not r["occupancy"]])


def describe(r: dict) -> str:
    what = f"{r['op']} {r['direction']} {r['case']} {r['dtype']} {r['layout']} [{r['config']}]"
    return what + (f": {r['error']}" if r["error"] else f": {r.get('spill_bytes')} B spilled, {r.get('regs')} regs")


def check_gates(reports: list[dict]) -> list[str]:
    """A line per broken gate, naming the Triton version and the rows (empty: every gate holds)."""
    out = []
    for rep in reports:
        for gate, rows in gate_failures(rep).items():
            for r in rows[:20]:
                out.append(f"triton {rep['triton']}: {gate}: {describe(r)}")
            if len(rows) > 20:
                out.append(f"triton {rep['triton']}: {gate}: ... {len(rows) - 20} more")
    return out
