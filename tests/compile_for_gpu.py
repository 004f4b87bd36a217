"""Compiles every Triton kernel for a GPU target ahead of time, on a machine with no GPU:
`python tests/compile_for_gpu.py 90 float32` prints one "ok <kernel>" line per kernel.

The interpreter runs the kernels' Python, not Triton's compiler: this catches what only compilation
finds (type errors in the lowering, LLVM or ptxas failures) before a GPU does. Run by
tests/test_compile_for_gpu.py in a subprocess, since an LLVM assertion aborts the process.
"""
from __future__ import annotations

import os
import sys

os.environ.pop("TRITON_INTERPRET", None)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from fastalex.kernels import conv2d as conv  # noqa: E402
from fastalex.kernels import local_response_norm as lrn  # noqa: E402
from fastalex.kernels import max_pool2d as pool  # noqa: E402
from fastalex.kernels import relu_lrn_max_pool2d as fused  # noqa: E402

FLOATS = {"alpha_over_size", "beta", "k"}
FP32_POINTERS = {"dw_ptr", "db_ptr"}  # conv grad_weight's fp32 partial sums
WINNERS = {"win_ptr"}
POOL = dict(KH=3, KW=3, SH=2, SW=2, PH=0, PW=0)
CONV = dict(KH=5, KW=5, SH=1, SW=1, PT=2, PL=2)

# (kernel, constexprs, num_warps): AlexNet's settings, each strategy's first (default) config.
KERNELS = [
    (lrn._lrn_forward_seq_kernel, dict(SIZE=5, BLOCK_S=128, PREFETCH=4), 1),
    (lrn._lrn_backward_seq_kernel, dict(SIZE=5, BLOCK_S=128, PREFETCH=4), 1),
    (lrn._lrn_forward_kernel, dict(SIZE=5, BLOCK_C=16, BLOCK_S=64, WINDOW_BY_DOT=False, DOT_PRECISION="tf32x3"), 4),
    (lrn._lrn_forward_kernel, dict(SIZE=5, BLOCK_C=32, BLOCK_S=64, WINDOW_BY_DOT=True, DOT_PRECISION="tf32x3"), 4),
    (lrn._lrn_backward_kernel, dict(SIZE=5, BLOCK_C=32, BLOCK_S=64, DOT_PRECISION="tf32x3"), 4),
    (pool._max_pool2d_forward_kernel, dict(**POOL, DH=1, DW=1, BLOCK_C=2, BLOCK_P=256), 4),
    (pool._max_pool2d_backward_kernel, dict(**POOL, DH=1, DW=1, TH=2, TW=2, BLOCK_C=64, BLOCK_P=16), 4),
    (fused._forward_seq_kernel, dict(SIZE=5, **POOL, TAPS=16, BLOCK_P=64, PREFETCH=2), 4),
    (fused._forward_shift_kernel, dict(SIZE=5, **POOL, BLOCK_C=32, BLOCK_P=16), 4),
    (fused._backward_seq_kernel, dict(SIZE=5, **POOL, TH=2, TW=2, BLOCK_P=128, PREFETCH=2), 1),
    (fused._backward_tile_kernel, dict(SIZE=5, **POOL, TH=2, TW=2, BLOCK_C=64, OUT_C=48, HALO=8, BLOCK_P=32,
                                       DOT_PRECISION="tf32x3"), 4),
    (conv._conv2d_forward_kernel, dict(**CONV, CG_IN=256, HAS_BIAS=True, RELU=True, PRECISION="tf32", BLOCK_M=128,
                                       BLOCK_N=128, BLOCK_K=32, N_TILES=1, C_STEPS=8, EVEN_C=True, EVEN_N=True), 4),
    (conv._conv2d_forward_kernel, dict(KH=11, KW=1, SH=4, SW=1, PT=0, PL=0, CG_IN=44, HAS_BIAS=False, RELU=False,
                                       PRECISION="ieee", BLOCK_M=64, BLOCK_N=32, BLOCK_K=64, N_TILES=3, C_STEPS=1,
                                       EVEN_C=False, EVEN_N=True), 4),
    (conv._conv2d_forward_gather_kernel, dict(KH=11, KW=11, SH=4, SW=4, PT=1, PL=1, HAS_BIAS=True, RELU=True,
                                              PRECISION="tf32", BLOCK_M=128, BLOCK_N=32, BLOCK_K=32, N_TILES=3), 4),
    (conv._conv2d_grad_input_kernel, dict(**CONV, RELU=True, PRECISION="tf32", BLOCK_M=128, BLOCK_N=128,
                                          BLOCK_K=32, C_STEPS=3, EVEN_C=False, EVEN_N=False), 4),
    (conv._conv2d_grad_input_kernel, dict(KH=3, KW=3, SH=2, SW=2, PT=1, PL=1, RELU=False, PRECISION="tf32",
                                          BLOCK_M=128, BLOCK_N=64, BLOCK_K=64, C_STEPS=2, EVEN_C=True,
                                          EVEN_N=True), 8),
    (conv._conv2d_grad_weight_kernel, dict(**CONV, HO=27, WO=27, RELU=True, BIAS=True, PRECISION="tf32",
                                           BLOCK_M=128, BLOCK_N=64, BLOCK_R=64, C_STEPS=2, DENSE=True), 4),
    (conv._conv2d_grad_weight_kernel, dict(**CONV, HO=13, WO=13, RELU=False, BIAS=False, PRECISION="tf32",
                                           BLOCK_M=64, BLOCK_N=64, BLOCK_R=64, C_STEPS=4, DENSE=False), 4),
    (conv._conv2d_grad_weight_gather_kernel, dict(KH=11, KW=11, SH=4, SW=4, PT=1, PL=1, RELU=False, BIAS=True,
                                                  PRECISION="tf32", BLOCK_M=64, BLOCK_N=64, BLOCK_R=64), 4),
]


def compile_one(fn, constexprs: dict, num_warps: int, dtype: str, capability: int) -> None:
    ty = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[dtype]
    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = "*u8" if name in WINNERS else "*fp32" if name in FP32_POINTERS else f"*{ty}"
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            signature[name] = "fp32" if name in FLOATS else "i32"
    src = ASTSource(fn, signature, dict(constexprs), attrs)
    triton.compile(src, target=GPUTarget("cuda", capability, 32), options=dict(num_warps=num_warps))


def main(capability: int, dtype: str) -> None:
    for fn, constexprs, num_warps in KERNELS:
        name = f"{fn.fn.__module__.rsplit('.', 1)[-1]}.{fn.fn.__name__}"
        print(f"compiling {name} {constexprs}", flush=True)
        compile_one(fn, constexprs, num_warps, dtype, capability)
        print(f"ok {name}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
