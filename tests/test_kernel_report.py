"""The compiled-code report (fastalex/bench/compiled_code.py, kernel_report.py) and benchmarks/KERNELS.md.

The parsing is tested on fixed SASS/PTX text and on a small kernel compiled for sm_90 through the
stand-in driver (a subprocess: the conftest turns the interpreter on for this process). KERNELS.md
must match the current kernels and candidate lists (its fingerprint) and show every gate holding;
regenerate it with `bash benchmarks/kernel_report.sh --write` (about 5 minutes on 2 cores).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastalex.bench import compiled_code as cc

ROOT = Path(__file__).resolve().parent.parent
KERNELS_MD = ROOT / "benchmarks" / "KERNELS.md"

SASS = """
        /*0000*/                   LDC R1, c[0x0][0x28] ;
        /*0010*/                   S2R R0, SR_TID.X ;
.L_x_1:
        /*0020*/                   IMAD.WIDE R2, R0, 0x4, R4 ;
        /*0030*/              @!P0 LDG.E.128 R8, desc[UR4][R2.64] ;
        /*0040*/                   IADD3 R0, R0, 0x1, RZ ;
        /*0050*/                   ISETP.GE.AND P0, PT, R0, R7, PT ;
        /*0060*/                   HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], R24 ;
        /*0070*/                   STL.64 [R1], R8 ;
        /*0075*/                   UIADD3 UR4, UR4, 0x1, URZ ;
        /*0080*/              @!P0 BRA `(.L_x_1) ;
        /*0090*/                   LDG.E.U16 R3, desc[UR4][R2.64] ;
        /*00a0*/                   EXIT ;
.L_x_2:
        /*00b0*/                   BRA `(.L_x_2);
        /*00c0*/                   NOP;
"""

PTX = """
	@%p1 ld.global.v4.b32 { %r1, %r2, %r3, %r4 }, [ %rd1 + 0 ];
	ld.global.b16 %rs1, [ %rd2 + 0 ];
	ld.global.L1::evict_last.v2.b32 { %r5, %r6 }, [ %rd3 + 0 ];
	cp.async.cg.shared.global [ %r39 + 0 ], [ %rd12 + 0 ], 0x10, %r40;
	cp.async.ca.shared.global [ %r41 + 0 ], [ %rd13 + 0 ], 4;
	st.global.v4.b32 [ %rd4 + 0 ], { %r1, %r2, %r3, %r4 };
	ld.shared.v4.b32 { %r1, %r2, %r3, %r4 }, [ %r7 + 0 ];
"""


def test_command_line_names_match_the_cases():
    from fastalex.bench import kernel_cases, kernel_report

    assert kernel_report.OPS == kernel_cases.OPS
    assert kernel_report.DTYPES == tuple(kernel_cases.DTYPES) and kernel_report.LAYOUTS == kernel_cases.LAYOUTS


def test_sass_main_loop_and_its_instruction_mix():
    instrs, labels = cc.parse_sass(SASS)
    assert labels == {".L_x_1": 0x20, ".L_x_2": 0xB0}
    loop = cc.main_loop(instrs, labels)  # the back edge 0x80 -> 0x20; the 1-instruction trap loop is no loop
    assert [i[0] for i in loop] == [0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x75, 0x80]
    mix = cc.count_sass(loop)
    assert mix == dict(sass=8, alu=2, imad=1, mma=1, load_bytes=16, spill_bytes=8)  # UIADD3: uniform, not counted
    whole = cc.count_sass(instrs)
    assert whole["sass"] == 13 and whole["load_bytes"] == 18  # the NOP is left out; LDG.E.U16 is 2 bytes


def test_no_loop_without_a_back_edge():
    instrs, labels = cc.parse_sass(SASS.replace("@!P0 BRA `(.L_x_1)", "@!P0 BRA `(.L_x_2)"))
    assert cc.main_loop(instrs, labels) is None


def test_ptx_global_load_widths():
    assert sorted(cc.ptx_load_bits(PTX)) == [16, 32, 64, 128, 128]  # stores and shared loads are not global loads


def test_resource_usage_line():
    text = " Function _k:\n  REG:255 STACK:56 SHARED:1024 LOCAL:0 CONSTANT[0]:640 TEXTURE:0"
    assert cc.resource_usage(text) == dict(regs=255, stack_bytes=56)
    with pytest.raises(ValueError):
        cc.resource_usage("nothing here")


@pytest.mark.parametrize("regs, smem, warps, ctas", [
    (255, 0, 4, 2),  # an MMA kernel at the register cap: 12.5%
    (205, 0, 1, 9),  # 208 x 32 registers per warp: 9 warps fit
    (56, 0, 4, 9),  # 1792 registers per warp: 36 warps, 9 CTAs of 4
    (32, 0, 4, 16),  # the 64-warp cap
    (32, 100 * 1024, 4, 2),  # shared memory: 228 KB / (100 KB + 1 KB reserved)
    (32, 76 * 1024, 4, 2),  # 3 x 76 KB would fit in 228 KB, but not with the 1 KB each CTA reserves
    (32, 0, 1, 32),  # the 32-CTA cap
    (32, 228 * 1024, 4, 0),  # over the 227 KB a CTA may have: cannot launch
])
def test_occupancy_on_sm90(regs, smem, warps, ctas):
    got, frac = cc.occupancy(regs, smem, warps)
    assert got == ctas and frac == pytest.approx(ctas * warps / 64)


def test_estimate_is_bounded_by_the_slowest_pipe():
    a = dict(ctas_per_sm=2, num_warps=4, loop=dict(sass=200, alu=100, imad=50, mma=4, load_bytes=64),
             whole=dict(sass=300, alu=120, imad=60, mma=4, load_bytes=64))
    # 132 CTAs, 10 steps each: per step max(4 x 200 / 4 issue, 4 x 2 x 100 / 4 ALU) = 200 cycles
    got = cc.estimate(a, (132, 1, 1), 10, nbytes=0, flops=0.0, dtype="bf16")
    assert got["est_ms"] == pytest.approx((10 * 200 + 4 * 100 / 4) / 1.7e9 * 1e3, rel=1e-3)
    assert got["floor_ms"] == 0
    # one CTA per SM (132 of them): 4 warps x 32 threads x 64 bytes of loads per step
    assert got["in_flight_kb"] == 8.0
    more_alu = dict(a, loop=dict(a["loop"], alu=300))
    assert cc.estimate(more_alu, (132, 1, 1), 10, 0, 0.0, "bf16")["est_ms"] > got["est_ms"]


SMALL_KERNEL = '''
import json, sys
import triton, triton.language as tl
import torch
from fastalex.bench import compiled_code as cc
from triton.runtime.driver import driver

@triton.jit
def scale_rows(x_ptr, y_ptr, n_rows, n_cols, BLOCK: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    for r in range(tl.program_id(0), n_rows, tl.num_programs(0)):
        v = tl.load(x_ptr + r * n_cols + cols, mask=cols < n_cols)
        tl.store(y_ptr + r * n_cols + cols, v * 2.0, mask=cols < n_cols)

before = driver.__dict__.get("_active")
x = torch.empty(64, 1024, device="meta")
with cc.compiling_for(90) as launches:
    scale_rows[(8,)](x, torch.empty_like(x), 64, 1024, BLOCK=1024, num_warps=2)
(launch,) = launches
a = cc.analyse(launch.kernel)
print(json.dumps(dict(grid=launch.grid, args=sorted(launch.args), regs=a["regs"], spill=a["spill_bytes"],
                      loop=a["loop"], bits=[a["min_load_bits"], a["max_load_bits"]], occ=a["occupancy"],
                      arch=launch.kernel.metadata.target.arch, ttir=launch.kernel.asm["ttir"],
                      restored=driver.__dict__.get("_active") is before)))
'''


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return dict(env, **extra)


def test_a_small_kernel_compiles_for_sm90_through_the_stand_in_driver(tmp_path):
    script = tmp_path / "small_kernel.py"
    script.write_text(SMALL_KERNEL)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         env=_env(TRITON_CACHE_DIR=str(tmp_path / "cache")))
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["arch"] == 90 and got["grid"] == [8, 1, 1] and got["restored"]
    assert got["args"] == ["BLOCK", "n_cols", "n_rows", "x_ptr", "y_ptr"]
    # the real binder specialised the pointers and n_cols = 1024 on divisibility by 16, as a GPU launch would
    assert got["ttir"].count("tt.divisibility = 16") >= 3
    assert 0 < got["regs"] <= 255 and got["spill"] == 0 and 0 < got["occ"] <= 1
    assert got["bits"] == [128, 128]  # 16-byte loads along the row
    assert got["loop"]["sass"] > 3 and got["loop"]["load_bytes"] >= 16


ROW_KEYS = {"kernel", "op", "direction", "case", "dtype", "layout", "config", "default", "ok", "error", "regs",
            "spill_bytes", "smem_bytes", "occupancy", "min_load_bits", "max_load_bits", "sass_per_step",
            "int_per_step", "est_ms", "floor_ms", "in_flight_kb"}


def _run_report(tmp_path, *args, **env):
    out_json = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "fastalex.bench.kernel_report", "--ops", "relu_lrn_max_pool", "--dtypes", "bf16",
           "--layouts", "cl", "--defaults-only", "--quiet", "--json", str(out_json), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env=_env(**env))
    return out, (json.loads(out_json.read_text()) if out_json.exists() else None)


def test_report_rows_through_the_real_launchers(tmp_path):
    out, report = _run_report(tmp_path, "--jobs", "0", "--cache-dir", str(tmp_path / "cache"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert report["target"] == "sm_90" and report["triton"] and len(report["rows"]) == 6
    for r in report["rows"]:
        assert ROW_KEYS <= set(r) and r["ok"] and r["default"] and r["op"] == "relu_lrn_max_pool"
        assert r["est_ms"] > 0 and r["floor_ms"] > 0
    bwd = [r for r in report["rows"] if r["direction"] == "bwd"]
    assert all(r["kernel"].endswith(":_backward_seq_kernel") and r["sass_per_step"] > r["int_per_step"] > 0
               for r in bwd)


def test_a_compiler_crash_is_a_failed_row_and_the_sweep_goes_on(tmp_path):
    out, report = _run_report(tmp_path, "--jobs", "1", "--cache-dir", str(tmp_path / "cache"),
                              FASTALEX_KERNELS_TEST_ABORT="2")
    assert out.returncode == 1
    assert [r["ok"] for r in report["rows"]] == [True, True, False, True, True, True]
    assert "died" in report["rows"][2]["error"] and "died" in out.stderr
    assert ROW_KEYS <= set(report["rows"][2]) and report["rows"][2]["regs"] is None


def _markdown() -> str:
    if not KERNELS_MD.exists():
        pytest.fail(f"{KERNELS_MD} is missing: run bash benchmarks/kernel_report.sh --write")
    return KERNELS_MD.read_text()


def test_kernels_md_is_current():
    from fastalex.bench import kernel_cases

    m = re.search(r"Fingerprint: `([0-9a-f]+)`", _markdown())
    assert m, "benchmarks/KERNELS.md has no fingerprint line"
    assert m[1] == kernel_cases.fingerprint(), (
        "a kernel, launcher or candidate list changed since benchmarks/KERNELS.md was generated: "
        "run bash benchmarks/kernel_report.sh --write (CI's gates run the same sweep)")


def test_kernels_md_gates_hold_on_both_triton_versions():
    from fastalex.bench.kernel_gates import GATES_HEADER

    text = _markdown()
    assert GATES_HEADER in text
    table = text.split(GATES_HEADER, 1)[1].strip().split("\n\n", 1)[0].splitlines()[1:]  # after the |---| line
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    versions = {r[0] for r in rows}
    assert any(v.startswith("3.6.") for v in versions) and len(versions) >= 2, versions
    for version, n, compiled, failed, spilling, unlaunchable in rows:
        assert int(n) > 0 and compiled == n and failed == "0", f"triton {version}: {failed} configs failed to compile"
        assert spilling == "0", f"triton {version}: {spilling} default configs spill"
        assert unlaunchable == "0", f"triton {version}: {unlaunchable} default configs cannot launch"
