"""`python -m fastalex kernels`: what every Triton kernel compiles to for a GPU, on a machine without one.

Method. Each launcher in fastalex/kernels is called with each candidate config it can pick at
AlexNet's shapes (fastalex/bench/kernel_cases.py) on meta tensors laid out as the model lays them
out. Triton's runtime driver is replaced by a stand-in that reports the target (default sm_90), and
`kernel[grid](...)` is routed to `JITFunction.warmup(...)`: the launch goes through Triton's real
binder, so integers equal to 1, divisibility by 16 and pointer alignment specialise exactly as on a
GPU, and then compiles instead of running. Nothing runs; no GPU or CUDA driver is needed; the
compile cache entries are the ones a real launch would use. Read from the compiled kernel:
- registers and the stack frame: the bundled cuobjdump's resource usage; spilled bytes as ptxas -v
  counts them ("bytes spill stores": the widths of the SASS STL instructions);
- shared memory: Triton's metadata; occupancy for sm_90 from those (65536 registers per SM allocated
  256 per warp, 228 KB of shared memory per SM with 1 KB reserved per CTA, 227 KB per CTA, 64 warps
  and 32 CTAs per SM);
- the widths of the global loads: the PTX (`ld.global[.v2|.v4]`, `cp.async` sizes);
- for kernels with a main loop, the SASS instructions in one iteration of it (the bundled nvdisasm;
  the loop is the back edge whose body holds the MMA, else the largest): all of them, and the
  integer-pipe ones (IMAD, IADD3, LOP3, SHF, ISETP, LEA, SEL, MOV, I2F/F2I, ...; uniform-datapath
  U* instructions are not counted).

Cost model (an ESTIMATE, labelled so wherever printed; a GPU measurement replaces it). H200 figures:
132 SMs at 1.7 GHz, 4.2 TB/s of HBM, 687 TFLOP/s bf16/fp16 MMA (measured), half that for TF32.
- floor_ms, the operation's floor whatever the config: max(bytes of every tensor the launch touches,
  each once / 4.2 TB/s, useful FLOPs / the MMA rate).
- est_ms, this config's compiled code: the busiest SM runs ceil(CTAs / 132) CTAs; one CTA costs, per
  main-loop step, max(its MMA FLOPs at the SM's share of the MMA rate, warps x SASS / 4 schedulers,
  warps x 2 x integer-ALU ops / 4, warps x 2 x IMAD / 4) cycles (the ALU and IMAD pipes take half a
  warp per cycle), times the steps, plus the code outside the loop once (kernels without a loop: all
  of it once). Memory: bytes / (4.2 TB/s x min(1, bytes in flight per SM / 20 KB)), where bytes in
  flight = resident CTAs x threads x bytes of global loads per thread in one step x the steps a load
  runs ahead of its use (the sequential kernels' PREFETCH, else 1) (Little's law at ~0.7 us latency;
  reported as in_flight_kb). est_ms = max(compute, memory). It ignores latency stalls, uncoalesced access,
  cache hits and tails, so a real run is typically 1.3-2x est_ms; use it to rank configs and to find
  where the work is, not as a time.

The command line (table, JSON, gates, benchmarks/KERNELS.md) is fastalex/bench/kernel_report.py.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import subprocess
import tempfile
import time

SMS, CLOCK_HZ, HBM_BYTES_S, IN_FLIGHT_BYTES = 132, 1.7e9, 4.2e12, 20 * 1024
MMA_FLOPS_S = {"bf16": 687e12, "fp16": 687e12, "fp32": 687e12 / 2}  # fp32 runs as TF32
REGS_PER_SM, REG_UNIT, WARPS_PER_SM, CTAS_PER_SM = 65536, 256, 64, 32
SMEM_PER_SM, SMEM_PER_CTA, SMEM_RESERVED_PER_CTA = 228 * 1024, 227 * 1024, 1024
INT_ALU = {"IADD3", "IADD", "IADD32I", "LOP3", "LOP", "LOP32I", "SHF", "SHL", "SHR", "ISETP", "LEA", "SEL", "IABS",
           "IMNMX", "VIMNMX", "VIADD", "VIADDMNMX", "PRMT", "FLO", "POPC", "BMSK", "BREV", "MOV", "MOV32I", "SGXT",
           "PLOP3", "P2R", "R2P", "ISCADD", "I2F", "F2I", "I2I", "I2FP", "F2IP"}
INT_FMA = {"IMAD", "IMAD32I", "IMADSP", "IMUL", "IMUL32I", "IDP", "IDP4A"}
MMA = {"HGMMA", "HMMA", "IMMA", "DMMA", "QGMMA", "IGMMA"}


class StandInDriver:
    """Triton's active driver while compiling for `target` with no GPU: it reports the target and a
    device of its own, and refuses anything that would load or run a kernel."""

    def __init__(self, target):
        self.target = target

    @classmethod
    def is_active(cls) -> bool:
        return False

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return f"stand-in-{self.target.backend}-{self.target.arch}"  # keys Triton's per-device caches

    def get_current_stream(self, device=None):
        return 0

    def get_active_torch_device(self):
        import torch

        return torch.device("meta")

    def __getattr__(self, name):  # utils, launcher_cls, get_benchmarker, ...: a launch, never meant to happen
        raise AttributeError(f"the stand-in driver (compiling for {self.target}) has no {name}: nothing runs here")


@dataclasses.dataclass
class Launch:
    """One `kernel[grid](...)` call made under compiling_for(): the kernel compiled instead."""

    fn: object  # the JITFunction
    grid: tuple  # (x, y, z)
    args: dict  # every named argument, constexprs included
    kernel: object = None  # triton's CompiledKernel, once compiled

    @property
    def name(self) -> str:
        return f"{self.fn.fn.__module__.rsplit('.', 1)[-1]}:{self.fn.fn.__name__}"


@contextlib.contextmanager
def compiling_for(arch: int = 90):
    """Within this, Triton targets sm_<arch> through a stand-in driver and every `kernel[grid](...)`
    compiles (JITFunction.warmup: Triton's own binder and specialisation) without running; yields the
    list each Launch is appended to. TRITON_INTERPRET must be off when the kernels are defined."""
    from triton.backends.compiler import GPUTarget
    from triton.runtime.driver import driver
    from triton.runtime.jit import KernelInterface

    launches: list[Launch] = []

    def getitem(self, grid):
        def compile_instead(*args, **kwargs):
            named = dict(zip(self.arg_names, args), **{k: v for k, v in kwargs.items() if k in self.arg_names})
            g = tuple(grid(named) if callable(grid) else grid)
            launch = Launch(self, g + (1,) * (3 - len(g)), named)
            launches.append(launch)
            launch.kernel = self.warmup(*args, grid=grid, **kwargs)

        return compile_instead

    previous = driver.__dict__.get("_active")
    original = KernelInterface.__getitem__
    driver.set_active(StandInDriver(GPUTarget("cuda", arch, 32)))
    KernelInterface.__getitem__ = getitem
    try:
        yield launches
    finally:
        KernelInterface.__getitem__ = original
        driver._active = previous  # not reset_active(): that would look for a real GPU


def _tool(name: str) -> str:
    import triton

    try:
        return getattr(triton.knobs.nvidia, name).path
    except AttributeError:
        return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def _run_on_cubin(tool: str, flags: list[str], cubin: bytes) -> str:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([_tool(tool), *flags, f.name], capture_output=True, text=True, check=True)
    return out.stdout


def resource_usage(text: str) -> dict:
    """Registers and stack frame bytes from `cuobjdump --dump-resource-usage` ("REG:255 STACK:56 ...")."""
    m = re.search(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)", text)
    if not m:
        raise ValueError(f"no resource usage in cuobjdump output: {text[:200]!r}")
    return dict(regs=int(m[1]), stack_bytes=int(m[2]) + int(m[4]))


_SASS_LINE = re.compile(r"/\*([0-9a-f]+)\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)([.\w]*)(.*)")
_LABEL = re.compile(r"^\s*(\.L_x_\d+|\.L_\w+):")


def parse_sass(text: str) -> tuple[list[tuple[int, str, str, str | None]], dict[str, int]]:
    """nvdisasm text -> ([(address, opcode, suffixes, branch target label)], {label: address})."""
    instrs, labels, pending = [], {}, []
    for line in text.splitlines():
        lm = _LABEL.match(line)
        if lm:
            pending.append(lm[1])
            continue
        m = _SASS_LINE.search(line)
        if not m:
            continue
        addr = int(m[1], 16)
        for label in pending:
            labels[label] = addr
        pending = []
        target = re.search(r"`\(([^)]+)\)", m[4]) if m[2] in ("BRA", "BRX", "JMP") else None
        instrs.append((addr, m[2], m[3], target[1] if target else None))
    return instrs, labels


def main_loop(instrs, labels) -> list | None:
    """The instructions of the main loop's body: among back edges (a branch to an earlier address)
    with more than one instruction, the loop holding MMA instructions, else the largest; None if
    the kernel has no loop."""
    loops = []
    for addr, op, _, target in instrs:
        if target in labels and labels[target] < addr:
            body = [i for i in instrs if labels[target] <= i[0] <= addr]
            if len(body) > 1:
                loops.append(body)
    if not loops:
        return None
    return max(loops, key=lambda b: (any(i[1] in MMA for i in b), len(b)))


def _access_bytes(op: str, suffix: str, ops=("LDG", "LDGSTS")) -> int:
    # per thread, of one SASS memory access among `ops`: .128 / .64 / .U16 ... (no suffix: 32 bits)
    if op not in ops:
        return 0
    for tag, n in ((".128", 16), (".64", 8), (".U16", 2), (".S16", 2), (".U8", 1), (".S8", 1)):
        if tag in suffix:
            return n
    return 4


def count_sass(instrs) -> dict:
    """Instruction mix of a list of parsed SASS instructions (NOPs left out)."""
    ops = [(op, sfx) for _, op, sfx, _ in instrs if op != "NOP"]
    return dict(sass=len(ops), alu=sum(op in INT_ALU for op, _ in ops), imad=sum(op in INT_FMA for op, _ in ops),
                mma=sum(op in MMA for op, _ in ops), load_bytes=sum(_access_bytes(op, sfx) for op, sfx in ops),
                spill_bytes=sum(_access_bytes(op, sfx, ("STL",)) for op, sfx in ops))  # = ptxas's spill stores


# cp.async.cg.shared.global [dst], [src], <bytes>[, src-size]
_CP_ASYNC = re.compile(r"\bcp\.async\.c[ag]\.shared\.global[.\w:]*\s*\[[^\]]*\]\s*,\s*\[[^\]]*\]\s*,\s*"
                       r"(0x[0-9a-fA-F]+|\d+)")


def ptx_load_bits(ptx: str) -> list[int]:
    """Width in bits of every global load in the PTX: ld.global[.v2|.v4].<type><bits> and cp.async's
    copy size (the shared-memory loads of a pipelined loop)."""
    bits = []
    for m in re.finditer(r"\bld\.global((?:\.[\w:]+)*)", ptx):
        tags = m[1].split(".")
        vec = next((int(t[1:]) for t in tags if re.fullmatch(r"v\d", t)), 1)
        width = next((int(t[1:]) for t in tags if re.fullmatch(r"[bsuf]\d+", t)), 32)
        bits.append(vec * width)
    for m in _CP_ASYNC.finditer(ptx):
        bits.append(int(m[1], 0) * 8)
    return bits


def occupancy(regs: int, smem: int, num_warps: int) -> tuple[int, float]:
    """(CTAs resident per SM, fraction of the SM's 64 warps) on sm_90; (0, 0.0) if one CTA does not fit."""
    if smem > SMEM_PER_CTA or regs > 255:
        return 0, 0.0
    per_warp = math.ceil(max(regs, 1) * 32 / REG_UNIT) * REG_UNIT
    ctas = min((REGS_PER_SM // per_warp) // num_warps, SMEM_PER_SM // (smem + SMEM_RESERVED_PER_CTA),
               WARPS_PER_SM // num_warps, CTAS_PER_SM)
    return ctas, ctas * num_warps / WARPS_PER_SM


_ANALYSED: dict[str, dict] = {}


@functools.lru_cache(maxsize=None)
def _source_hash() -> str:
    with open(__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def _analysis_path(kernel) -> str:
    """Where analyse() keeps its result on disk: beside Triton's cache, keyed by the kernel's hash and by
    this module's source (a change to the parsing is a new key), so a rerun spawns no disassembler."""
    import triton

    return os.path.join(triton.knobs.cache.dir, "fastalex-analysis", f"{kernel.hash}-{_source_hash()}.json")


def analyse(kernel) -> dict:
    """What the compiled kernel is made of, cached by its hash (cases often share a compile) in this
    process and on disk."""
    if kernel.hash in _ANALYSED:
        return _ANALYSED[kernel.hash]
    path = _analysis_path(kernel)
    if os.path.exists(path):
        with open(path) as f:
            out = _ANALYSED[kernel.hash] = json.load(f)
        return out
    cubin, md = kernel.asm["cubin"], kernel.metadata
    res = resource_usage(_run_on_cubin("cuobjdump", ["--dump-resource-usage"], cubin))
    instrs, labels = parse_sass(_run_on_cubin("nvdisasm", ["-c", "-ndf"], cubin))  # -ndf: a third faster, same text
    loop = main_loop(instrs, labels)
    bits = ptx_load_bits(kernel.asm["ptx"])
    ctas, occ = occupancy(res["regs"], md.shared, md.num_warps)
    whole = count_sass(instrs)
    out = dict(res, spill_bytes=whole["spill_bytes"], smem_bytes=md.shared, num_warps=md.num_warps, ctas_per_sm=ctas,
               occupancy=round(occ, 4), min_load_bits=min(bits, default=None), max_load_bits=max(bits, default=None),
               whole=whole, loop=count_sass(loop) if loop else None)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(path), delete=False, suffix=".tmp") as f:
        json.dump(out, f)
    os.replace(f.name, path)  # atomic: parallel workers may write the same entry
    _ANALYSED[kernel.hash] = out
    return out


def estimate(a: dict, grid: tuple, steps: int | None, nbytes: int, flops: float, dtype: str,
             ahead: int = 1) -> dict:
    """est_ms, floor_ms and in_flight_kb by the model in the module docstring (ESTIMATES). ahead: the
    steps a main-loop load is issued before its use (a sequential kernel's PREFETCH)."""
    rate = MMA_FLOPS_S[dtype]
    floor_ms = max(nbytes / HBM_BYTES_S, flops / rate) * 1e3
    ctas = math.prod(grid)
    if not a["ctas_per_sm"] or not ctas:
        return dict(est_ms=None, floor_ms=_sig(floor_ms), in_flight_kb=None)
    nw, mma_per_cycle = a["num_warps"], rate / SMS / CLOCK_HZ

    def cycles(c, mma_flops):
        return max(nw * max(c["sass"], 2 * c["alu"], 2 * c["imad"]) / 4, mma_flops / mma_per_cycle)

    loop, whole = a["loop"], a["whole"]
    if loop and steps:
        rest = {k: max(0, whole[k] - loop[k]) for k in whole}
        per_cta = steps * cycles(loop, flops / ctas / steps) + cycles(rest, 0.0)
    else:
        per_cta = cycles(whole, flops / ctas)
    compute_s = math.ceil(ctas / SMS) * per_cta / CLOCK_HZ
    load_bytes = (loop or whole)["load_bytes"]
    in_flight = min(a["ctas_per_sm"], math.ceil(ctas / SMS)) * nw * 32 * load_bytes * max(1, ahead)
    memory_s = nbytes / (HBM_BYTES_S * min(1.0, in_flight / IN_FLIGHT_BYTES)) if in_flight else 0.0
    return dict(est_ms=_sig(max(compute_s, memory_s) * 1e3), floor_ms=_sig(floor_ms),
                in_flight_kb=round(in_flight / 1024, 1))


def _sig(x: float) -> float:
    return float(f"{x:.4g}")


def _touched_bytes(args: dict) -> int:
    import torch

    seen = {id(v): v for v in args.values() if isinstance(v, torch.Tensor)}  # a tensor passed twice counts once
    # An overlapping view (conv1's row layout) counts the memory it spans, not its elements.
    return sum(min(t.numel(), 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride()))) * t.element_size()
               for t in seen.values() if t.numel())


METRICS = ("regs", "spill_bytes", "stack_bytes", "smem_bytes", "num_warps", "occupancy", "min_load_bits",
           "max_load_bits", "sass_per_step", "int_per_step", "steps", "grid", "est_ms", "floor_ms", "in_flight_kb")


def empty_row(job, error: str | None = None) -> dict:
    """A report row for `job` with every key, the measurements None (what a failed compile leaves)."""
    from fastalex.bench import kernel_cases

    return dict(kernel=None, op=job.op, direction=job.direction, case=job.case, dtype=job.dtype, layout=job.layout,
                config=kernel_cases.config_name(job.config), default=job.default, ok=False, error=error,
                compile_s=None, **dict.fromkeys(METRICS))


def _measure(launch: Launch, job) -> dict:
    from fastalex.bench import kernel_cases

    a = analyse(launch.kernel)
    loop = a["loop"]
    steps_fn = kernel_cases.STEPS.get(launch.fn.fn.__name__)
    steps = steps_fn(launch.args) if steps_fn and loop else None
    ahead = launch.args.get("PREFETCH", 1) if loop else 1
    return dict(regs=a["regs"], spill_bytes=a["spill_bytes"], stack_bytes=a["stack_bytes"], smem_bytes=a["smem_bytes"],
                num_warps=a["num_warps"], occupancy=a["occupancy"], min_load_bits=a["min_load_bits"],
                max_load_bits=a["max_load_bits"], sass_per_step=loop["sass"] if loop else None,
                int_per_step=loop["alu"] + loop["imad"] if loop else None, steps=steps, grid=list(launch.grid),
                **estimate(a, launch.grid, steps, _touched_bytes(launch.args), job.flops, job.dtype, ahead))


def compile_job(job, launches: list) -> dict:
    """One report row: job.run() under compiling_for(), then what the compiled kernel is made of."""
    n0, t0 = len(launches), time.perf_counter()
    row = empty_row(job)
    try:
        job.run()
        if len(launches) == n0:
            raise RuntimeError("the launcher compiled no kernel")
        row.update(_measure(launches[-1], job), ok=True)
    except Exception as e:  # noqa: BLE001 - a failed compile is a row of the report, not the end of it
        lines = [s for s in str(e).strip().splitlines() if s.strip()]
        row["error"] = f"{type(e).__name__}: {' | '.join(lines[:3])[:400]}"
    row["compile_s"] = round(time.perf_counter() - t0, 2)
    if len(launches) > n0:
        row["kernel"] = launches[-1].name
    return row
