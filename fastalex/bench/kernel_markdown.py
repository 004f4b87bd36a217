"""benchmarks/KERNELS.md from the compiled-code reports of one or more Triton versions
(fastalex/bench/kernel_report.py writes them; `bash benchmarks/kernel_report.sh --write` makes both).

The gates table and the fingerprint line are read back by tests/test_kernel_report.py: keep their
format (GATES_HEADER, "Fingerprint: `...`").
"""
from __future__ import annotations

from fastalex.bench.kernel_gates import GATES_HEADER, gate_failures

TRAINING_PATH = ("bf16", "cl")


def _key(r: dict) -> tuple:
    return r["op"], r["direction"], r["case"], r["dtype"], r["layout"], r["config"]


def _merged(reports: list[dict]) -> list[tuple[dict, list[dict | None]]]:
    """(a row of the first report, the same row in each report or None), in the first report's order."""
    by_version = [{_key(r): r for r in rep["rows"]} for rep in reports]
    keys = list(dict.fromkeys(_key(r) for rep in reports for r in rep["rows"]))
    return [(next(b[k] for b in by_version if k in b), [b.get(k) for b in by_version]) for k in keys]


def _each(rows: list[dict | None], field: str, fmt=str) -> str:
    vals = ["-" if r is None or r.get(field) is None else fmt(r[field]) for r in rows]
    return vals[0] if len(set(vals)) == 1 else " / ".join(vals)


def _loads(r: dict | None) -> str:
    if r is None or not r.get("max_load_bits"):
        return "-"
    lo, hi = r["min_load_bits"], r["max_load_bits"]
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _step(r: dict | None) -> str:
    return f"{r['sass_per_step']} ({r['int_per_step']})" if r and r.get("sass_per_step") else "-"


def _header(reports: list[dict]) -> list[str]:
    versions = " and ".join(rep["triton"] for rep in reports)
    sweeps = sorted({rep["sweep"] for rep in reports})
    what = {"ci": "every candidate on the training path (bf16, channels_last), each launch's default elsewhere",
            "all": "every candidate", "defaults": "each launch's default"}
    return [
        f"# Triton kernels compiled for {reports[0]['target']} at AlexNet's shapes",
        "",
        f"Generated on {max(rep['date'] for rep in reports)} by `bash benchmarks/kernel_report.sh --write` under "
        f"Triton {versions}, without a GPU; do not edit by hand. Sweep: {'; '.join(what[s] for s in sweeps)}.",
        f"Fingerprint: `{reports[0]['fingerprint']}` (of the kernels, launchers and candidate lists; "
        "tests/test_kernel_report.py fails when it no longer matches them).",
        "",
        "Method and cost model: fastalex/bench/compiled_code.py. A cell with two values reads "
        f"\"{' / '.join(rep['triton'] for rep in reports)}\". **est ms is an ESTIMATE from the compiled code "
        "(a real run is typically 1.3-2x it), not a measurement**; floor ms is the operation's floor "
        "(bytes at 4.2 TB/s, FLOPs at 687 TFLOP/s).",
        "",
    ]


def _gates(reports: list[dict]) -> list[str]:
    out = ["## Gates", "", GATES_HEADER, "|---|---|---|---|---|---|"]
    for rep in reports:
        g, n = gate_failures(rep), len(rep["rows"])
        out.append(f"| {rep['triton']} | {n} | {n - len(g['failed'])} | {len(g['failed'])} | {len(g['spilling'])} "
                   f"| {len(g['unlaunchable'])} |")
    return out + [""]


def _defaults_table(merged, title: str, keep) -> list[str]:
    out = [f"## {title}", "", "| op | dir | case | dtype | layout | kernel | config | regs | spill B | smem KB | "
           "occ % | load bits | SASS per step (integer) | KB in flight per SM | est ms (estimate) | floor ms |",
           "|" + "---|" * 16]
    n = 0
    for first, rows in merged:
        if not first["default"] or not keep(first, rows):
            continue
        n += 1
        kernel = (first["kernel"] or "-").split(":")[-1]
        out.append(
            f"| {first['op']} | {first['direction']} | {first['case']} | {first['dtype']} | {first['layout']} | "
            f"{kernel} | {first['config']} | {_each(rows, 'regs')} | {_each(rows, 'spill_bytes')} | "
            f"{_each(rows, 'smem_bytes', lambda v: f'{v / 1024:.0f}')} | "
            f"{_each(rows, 'occupancy', lambda v: f'{v * 100:.1f}')} | "
            f"{' / '.join(dict.fromkeys(map(_loads, rows)))} | {' / '.join(dict.fromkeys(map(_step, rows)))} | "
            f"{_each(rows, 'in_flight_kb', lambda v: f'{v:.1f}')} | {_each(rows, 'est_ms', lambda v: f'{v:.3f}')} | {_each(rows, 'floor_ms', lambda v: f'{v:.3f}')} |")
    return out + (["", "(none)"] if n == 0 else []) + [""]


def _flagged(first: dict, rows: list[dict | None]) -> bool:
    return any(r is None or not r["ok"] or r["spill_bytes"] or r["occupancy"] < 0.125 for r in rows)


def _candidates(merged) -> list[str]:
    out = ["## Every candidate on the training path (bf16, channels_last)", "",
           "Per launch: the default's estimate against the best candidate's (by the first version's estimate), "
           "and the candidates that spill.", "",
           "| op | dir | case | candidates | default est ms | best est ms (config) | spilling candidates (bytes) |",
           "|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list] = {}
    for first, rows in merged:
        if (first["dtype"], first["layout"]) == TRAINING_PATH:
            groups.setdefault((first["op"], first["direction"], first["case"]), []).append((first, rows))
    for (op, d, case), items in groups.items():
        if len(items) < 2:
            continue
        default = next((rows for first, rows in items if first["default"]), items[0][1])
        timed = [(rows[0]["est_ms"], first["config"]) for first, rows in items
                 if rows[0] is not None and rows[0].get("est_ms") is not None]
        best = min(timed) if timed else None
        spills = [f"{first['config']}: {_each(rows, 'spill_bytes')}" for first, rows in items
                  if any(r and r.get("spill_bytes") for r in rows)]
        out.append(f"| {op} | {d} | {case} | {len(items)} | {_each(default, 'est_ms', lambda v: f'{v:.3f}')} | "
                   f"{f'{best[0]:.3f} ({best[1]})' if best else '-'} | {'; '.join(spills) or '-'} |")
    return out + [""]


def _per_combo(reports: list[dict]) -> list[str]:
    out = ["## Defaults per dtype and layout", "",
           "| triton | dtype | layout | launches | most regs | spilling | lowest occupancy % |", "|" + "---|" * 7]
    for rep in reports:
        combos: dict[tuple, list] = {}
        for r in rep["rows"]:
            if r["default"]:
                combos.setdefault((r["dtype"], r["layout"]), []).append(r)
        for (dt, layout), rows in combos.items():
            ok = [r for r in rows if r["ok"]]
            most = max((r["regs"] for r in ok), default="-")
            spilling = sum(1 for r in ok if r["spill_bytes"])
            out.append(f"| {rep['triton']} | {dt} | {layout} | {len(rows)} | {most} | {spilling} | "
                       f"{min((r['occupancy'] for r in ok), default=0) * 100:.1f} |")
    return out + [""]


def render(reports: list[dict]) -> str:
    """The markdown report of `reports` (one per Triton version, same sweep)."""
    merged = _merged(reports)
    lines = _header(reports) + _gates(reports) + _per_combo(reports)
    lines += _defaults_table(merged, "Defaults on the training path (bf16, channels_last)",
                             lambda first, rows: (first["dtype"], first["layout"]) == TRAINING_PATH)
    lines += _defaults_table(merged, "Defaults elsewhere that spill, fail or run below 12.5% occupancy",
                             lambda first, rows: (first["dtype"], first["layout"]) != TRAINING_PATH
                             and _flagged(first, rows))
    lines += _candidates(merged)
    return "\n".join(lines)
