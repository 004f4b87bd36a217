"""The command line of the compiled-code report (`python -m fastalex kernels`, or
`python -m fastalex.bench.kernel_report`): sweep, table, JSON, gates, and benchmarks/KERNELS.md.

    python -m fastalex.bench.kernel_report --dtypes bf16 --layouts cl --json /tmp/k.json
    python -m fastalex.bench.kernel_report --ci --jobs 2 --json /tmp/k38.json     (what CI runs)
    python -m fastalex.bench.kernel_report --gates --from /tmp/k36.json /tmp/k38.json
    python -m fastalex.bench.kernel_report --markdown benchmarks/KERNELS.md --from /tmp/k36.json /tmp/k38.json

Compiles run in worker processes (--jobs, default 1; 0 runs them in this process), so an LLVM or
ptxas crash becomes a failed row and the sweep goes on. Compiles are cached in a folder under the
temp directory, one per Triton version (--cache-dir). How the method works and the cost model:
fastalex/bench/compiled_code.py.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

from fastalex.bench.kernel_gates import check_gates, describe, gate_failures

OPS, DTYPES, LAYOUTS = ("lrn", "max_pool", "relu_lrn_max_pool", "conv"), ("bf16", "fp16", "fp32"), ("cl", "nchw")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The report's options, on its own parser or on `fastalex kernels`'s (fastalex/bench/kernels_cli.py)."""
    p.add_argument("--target", default="sm_90", help="GPU target (default sm_90; the occupancy and the cost "
                   "model are an H100/H200's whatever the target)")
    p.add_argument("--ops", default=",".join(OPS), help="comma list of " + ", ".join(OPS))
    p.add_argument("--dtypes", default=",".join(DTYPES), help="comma list of " + ", ".join(DTYPES))
    p.add_argument("--layouts", default=",".join(LAYOUTS), help="comma list of cl (channels_last), nchw")
    p.add_argument("--defaults-only", action="store_true", help="only each launch's first candidate (untuned)")
    p.add_argument("--ci", action="store_true", help="every candidate on the training path (bf16 channels_last), "
                   "the defaults elsewhere")
    p.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    p.add_argument("--jobs", type=int, default=1, help="compiler processes (default 1; 0: in this process)")
    p.add_argument("--cache-dir", help="Triton cache (default: <tmp>/fastalex-kernel-report/triton-<version>)")
    p.add_argument("--quiet", action="store_true", help="print the summary, not the table")
    p.add_argument("--gates", action="store_true", help="exit 1 unless every row compiled and no default row "
                   "spills or is too big to launch (of this sweep, or of the --from files)")
    p.add_argument("--from", dest="inputs", nargs="+", metavar="JSON", help="use these reports instead of compiling")
    p.add_argument("--markdown", metavar="PATH", help="write the markdown report of the --from files")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # "i/n": compile shard i of n, from --start
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--rows-file", help=argparse.SUPPRESS)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastalex kernels", description=(
        "Compile every Triton kernel config fastalex can pick at AlexNet's shapes for a GPU target, without a "
        "GPU, and report registers, spills, shared memory, occupancy, load widths, SASS per main-loop step "
        "and an ESTIMATED time (fastalex/bench/compiled_code.py documents the method and the cost model)."))
    add_arguments(p)
    return p


def _selection_argv(args) -> list[str]:
    """The options a worker process needs to rebuild the same job list."""
    out = ["--target", args.target, "--ops", args.ops, "--dtypes", args.dtypes, "--layouts", args.layouts]
    return out + (["--defaults-only"] if args.defaults_only else []) + (["--ci"] if args.ci else [])


def _split(value: str, allowed, what: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise SystemExit(f"fastalex kernels: unknown {what} {', '.join(bad) or '(none)'}; choose from "
                         + ", ".join(allowed))
    return items


def _select(args) -> list:
    from fastalex.bench import kernel_cases as cases

    sweep = "defaults" if args.defaults_only else "ci" if args.ci else "all"
    return cases.jobs(_split(args.ops, OPS, "op"), _split(args.dtypes, DTYPES, "dtype"),
                      _split(args.layouts, LAYOUTS, "layout"), sweep)


def _arch(target: str) -> int:
    return int(target.removeprefix("sm_").rstrip("a"))


def _worker(args, jobs) -> int:
    from fastalex.bench import compiled_code

    from fastalex.bench import kernel_cases as cases

    shard, n = map(int, args.worker.split("/"))
    mine = cases.shards(jobs, n)
    with open(args.rows_file, "a") as out, compiled_code.compiling_for(_arch(args.target)) as launches:
        for i in range(args.start, len(jobs)):
            if mine[i] != shard:
                continue
            out.write(json.dumps({"start": i}) + "\n")
            out.flush()
            if os.environ.get("FASTALEX_KERNELS_TEST_ABORT") == str(i):  # tests: a compiler crash on job i
                os.abort()
            out.write(json.dumps({"index": i, "row": compiled_code.compile_job(jobs[i], launches)}) + "\n")
            out.flush()
    return 0


def _read_rows(path: str) -> tuple[dict[int, dict], list[int]]:
    """A worker's file: ({job index: row} finished, [job indices] started)."""
    done, started = {}, []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    continue  # the line the worker was writing when it died
                rec = json.loads(line)
                if "start" in rec:
                    started.append(rec["start"])
                else:
                    done[rec["index"]] = rec["row"]
    return done, started


def _sweep(args, jobs) -> list[dict]:
    """Every job's row, compiled by args.jobs worker processes; a worker that dies (an LLVM assertion,
    a ptxas crash) leaves a failed row for the job it was on, and a new worker takes up after it."""
    from fastalex.bench import kernel_cases as cases

    n, rows, t0, last = max(1, args.jobs), {}, time.time(), time.time()
    mine = cases.shards(jobs, n)
    base = [sys.executable, "-m", "fastalex.bench.kernel_report", *_selection_argv(args)]
    with tempfile.TemporaryDirectory(prefix="fastalex-kernels-") as tmp:
        def start(shard: int, first: int):
            path = os.path.join(tmp, f"rows-{shard}-{first}.jsonl")
            cmd = [*base, "--worker", f"{shard}/{n}", "--start", str(first), "--rows-file", path]
            return subprocess.Popen(cmd), path

        running = {s: start(s, 0) for s in set(mine)}
        while running:
            time.sleep(0.2)
            for shard, (proc, path) in list(running.items()):
                if proc.poll() is None:
                    continue
                done, started = _read_rows(path)
                rows.update(done)
                del running[shard]
                lost = [i for i in started if i not in done]
                for i in lost:
                    rows[i] = _crashed_row(jobs[i], proc.returncode)
                    if shard in mine[i + 1:]:
                        running[shard] = start(shard, i + 1)
                if not lost and any(m == shard and i not in rows for i, m in enumerate(mine)):
                    raise RuntimeError(f"fastalex kernels: a compiler process ended (exit {proc.returncode}) "
                                       "with jobs left that it never started")
            if time.time() - last > 30:
                last = time.time()
                total = len(rows) + sum(len(_read_rows(p)[0]) for _, p in running.values())
                print(f"fastalex kernels: {total}/{len(jobs)} compiled, {time.time() - t0:.0f} s", file=sys.stderr)
    return [rows[i] for i in range(len(jobs))]


def _crashed_row(job, rc: int) -> dict:
    from fastalex.bench import compiled_code

    return compiled_code.empty_row(job, f"the compiler process died (exit code {rc}) compiling this config")


def _in_process(args, jobs) -> list[dict]:
    from fastalex.bench import compiled_code

    with compiled_code.compiling_for(_arch(args.target)) as launches:
        return [compiled_code.compile_job(job, launches) for job in jobs]


def _fmt(v, spec="") -> str:
    return "-" if v is None else format(v, spec)


def format_table(rows: list[dict]) -> str:
    """One line per row; est_ms is an ESTIMATE from the compiled code (compiled_code.py's model)."""
    head = (f"{'kernel':<38} {'dir':<5} {'case':<15} {'dtype':<4} {'lay':<4} {'config':<30} {'def':<3} {'ok':<3} "
            f"{'regs':>4} {'spill':>5} {'smemKB':>6} {'occ%':>5} {'ld bits':>7} {'sass/int step':>13} "
            f"{'inflKB':>6} {'est ms*':>8} {'floor ms':>8}")
    out = [head]
    for r in rows:
        loads = f"{r.get('min_load_bits')}-{r.get('max_load_bits')}" if r.get("max_load_bits") else "-"
        step = f"{r['sass_per_step']}/{r['int_per_step']}" if r.get("sass_per_step") else "-"
        smem = r.get("smem_bytes")
        out.append(f"{r['kernel'] or r['op']:<38} {r['direction']:<5} {r['case']:<15} {r['dtype']:<4} "
                   f"{r['layout']:<4} {r['config']:<30} {'*' if r['default'] else '':<3} "
                   f"{'ok' if r['ok'] else 'NO':<3} "
                   f"{_fmt(r.get('regs')):>4} {_fmt(r.get('spill_bytes')):>5} "
                   f"{_fmt(smem / 1024 if smem is not None else None, '.1f'):>6} "
                   f"{_fmt(r['occupancy'] * 100 if r.get('occupancy') is not None else None, '.1f'):>5} "
                   f"{loads:>7} {step:>13} {_fmt(r.get('in_flight_kb'), '.1f'):>6} "
                   f"{_fmt(r.get('est_ms'), '.4f'):>8} {_fmt(r.get('floor_ms'), '.4f'):>8}"
                   + (f"  {r['error']}" if r["error"] else ""))
    out.append("* est ms: an ESTIMATE from the compiled code (fastalex/bench/compiled_code.py), not a measurement")
    return "\n".join(out)


def _summary(report: dict) -> str:
    g = gate_failures(report)
    n = len(report["rows"])
    return (f"triton {report['triton']} ({report['target']}): {n} rows, {n - len(g['failed'])} compiled, "
            f"{len(g['failed'])} failed; default rows spilling: {len(g['spilling'])}; defaults that cannot launch: "
            f"{len(g['unlaunchable'])}; {report.get('elapsed_s', 0):.0f} s")


def _compile(args) -> dict:
    import triton

    from fastalex.bench import kernel_cases as cases

    default = os.path.join(tempfile.gettempdir(), "fastalex-kernel-report", f"triton-{triton.__version__}")
    os.environ["TRITON_CACHE_DIR"] = args.cache_dir or default  # the workers inherit it
    jobs = _select(args)
    t0 = time.time()
    rows = _in_process(args, jobs) if args.jobs == 0 else _sweep(args, jobs)
    sweep = "defaults" if args.defaults_only else "ci" if args.ci else "all"
    return dict(triton=triton.__version__, target=args.target, date=datetime.date.today().isoformat(),
                fingerprint=cases.fingerprint(), sweep=sweep, ops=args.ops, dtypes=args.dtypes,
                layouts=args.layouts, elapsed_s=round(time.time() - t0, 1), rows=rows)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run(parser().parse_args(argv[1:] if argv[:1] == ["--"] else argv))


def run(args) -> int:
    """The command, on parsed options (main's, or `fastalex kernels`'s)."""
    from fastalex.kernels import _common

    if _common.interpreting():
        if any(m.startswith("fastalex.kernels.") and m != "fastalex.kernels._common" for m in sys.modules):
            print("fastalex kernels: TRITON_INTERPRET is set and the kernels are already defined for the "
                  "interpreter; run it in a process without TRITON_INTERPRET", file=sys.stderr)
            return 2
        os.environ.pop("TRITON_INTERPRET")  # before the kernels are defined: compile, don't interpret
    if args.worker:
        return _worker(args, _select(args))
    if args.inputs:
        reports = []
        for path in args.inputs:
            with open(path) as f:
                reports.append(json.load(f))
    else:
        reports = [_compile(args)]
        if not args.quiet:
            print(format_table(reports[0]["rows"]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(reports[0], f, indent=0)
    if args.markdown:
        from fastalex.bench import kernel_markdown

        with open(args.markdown, "w") as f:
            f.write(kernel_markdown.render(reports))
    for rep in reports:
        print(_summary(rep))
    broken = check_gates(reports) if args.gates else [f"failed: {describe(r)}" for rep in reports
                                                       for r in gate_failures(rep)["failed"]]
    for line in broken:
        print(line, file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
