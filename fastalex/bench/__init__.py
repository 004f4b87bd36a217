"""Measurement helpers shared by `python -m fastalex bench` and the pytest-benchmark suites.

Every figure is measured in the running process: the device's copy bandwidth, then each operator
for a fastalex backend and for torch (eager, and compiled where asked) on the same inputs, so the
ratios compare like with like. GB/s count the bytes an operator must move at least (Case.traffic);
convolutions are rated in TFLOP/s against the bf16 matmul rate measured in the same run.
GPU times come from CUDA events (median of many launches after a warm-up), CPU times from
perf_counter.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

import fastalex
from fastalex import functional as fa


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int = 5, samples: int = 15,
            budget_s: float = 0.5) -> float:
    """Median milliseconds of one fn() on `device`: device time on CUDA, wall clock on CPU.

    On CUDA the host's Python and launch overhead must stay out of the figure: each sample parks the
    GPU on a sleep kernel while the host queues `calls` launches of fn behind it, and CUDA events
    time those launches back to back. fn must not synchronize.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    once_s = max(time.perf_counter() - t0, 1e-6)
    if device.type != "cuda":
        reps = int(min(200, max(3, budget_s / once_s)))
        out = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(out)
    calls = int(min(50, max(1, 0.02 / once_s)))  # about 20 ms of work per sample
    out = []
    for _ in range(samples):
        # Long enough for the host to queue every call (at ~2 GHz; a slower clock only waits longer).
        torch.cuda._sleep(int(2e9 * (once_s * calls * 1.5 + 1e-3)))
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end) / calls)
    return statistics.median(out)


def matmul_tflops(device: torch.device) -> float | None:
    """bf16 matmul rate (8192^3) in TFLOP/s on a GPU; None on the CPU."""
    if device.type != "cuda":
        return None
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = time_ms(lambda: a @ b, device, warmup=3)
    return 2 * n**3 / (ms * 1e-3) / 1e12


def copy_bandwidth_gbps(device: torch.device) -> float:
    """Device copy bandwidth in GB/s, counting bytes read plus bytes written."""
    nbytes = (1 << 30) if device.type == "cuda" else (1 << 28)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device, warmup=3)
    return 2 * nbytes / (ms * 1e-3) / 1e9


# The operators measured; each row compares one of them on a fastalex backend with a reference.
OPS = ("lrn", "max_pool", "relu_lrn_max_pool")
# AlexNet's settings: LRN (torch's arguments: the paper's k=2, n=5, alpha 1e-4 on the raw sum is 5e-4
# here) and the overlapping 3x3/2 max-pool.
LRN_ARGS = (5, 5e-4, 0.75, 2.0)
POOL_ARGS = (3, 2)


@dataclasses.dataclass
class Case:
    op: str  # one of OPS
    batch: int
    channels: int
    hw: int
    dtype: torch.dtype
    channels_last: bool = False

    @property
    def name(self) -> str:
        dt = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, str(self.dtype))
        return f"{self.batch}x{self.channels}x{self.hw}x{self.hw} {dt}{' cl' if self.channels_last else ''}"

    @property
    def pooled(self) -> bool:
        return self.op != "lrn"

    def make(self, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, gradient of the output), in the case's dtype and layout."""
        g = torch.Generator(device=device).manual_seed(seed)
        shape = (self.batch, self.channels, self.hw, self.hw)
        if self.op == "relu_lrn_max_pool":  # a convolution's output: half of it below zero
            x = torch.randn(shape, generator=g, device=device, dtype=torch.float32)
        else:  # post-ReLU-like magnitudes, never all zeros (zeros hide unwritten outputs and run faster)
            x = torch.rand(shape, generator=g, device=device, dtype=torch.float32).mul_(4)
        out_hw = (self.hw - POOL_ARGS[0]) // POOL_ARGS[1] + 1 if self.pooled else self.hw
        grad = torch.randn((self.batch, self.channels, out_hw, out_hw), generator=g, device=device,
                           dtype=torch.float32)
        x, grad = x.to(self.dtype), grad.to(self.dtype)
        if self.channels_last:
            x, grad = x.to(memory_format=torch.channels_last), grad.to(memory_format=torch.channels_last)
        return x, grad

    def traffic(self, x: torch.Tensor, grad: torch.Tensor) -> tuple[int, int]:
        """Bytes the forward and the forward+backward must move at least: read the input, write the
        output; then read the output's gradient and write the input's (the LRN backward also reads x)."""
        nx, ny = x.numel() * x.element_size(), grad.numel() * grad.element_size()
        fwd = nx + ny
        return fwd, fwd + ny + nx + (nx if self.op != "max_pool" else 0)


def cases(op: str, device: torch.device, quick: bool = False) -> list[Case]:
    """AlexNet's inputs to `op`: batch 128 on a GPU, batch 16 on the CPU; quick: one small case."""
    if quick:
        return [Case(op, 2, 96, 27, torch.float32)]
    if device.type != "cuda":
        return [Case(op, 16, 96, 55, torch.float32), Case(op, 16, 256, 27, torch.float32),
                Case(op, 16, 96, 55, torch.float32, channels_last=True)]
    if op == "max_pool":
        shapes = [(96, 55), (256, 27), (256, 13)]
        return ([Case(op, 128, c, hw, dt) for dt in (torch.float32, torch.bfloat16) for c, hw in shapes]
                + [Case(op, 128, 96, 55, dt, channels_last=True) for dt in (torch.float32, torch.bfloat16)])
    return ([Case(op, 128, c, hw, dt) for dt in (torch.float32, torch.bfloat16) for c, hw in ((96, 55), (256, 27))]
            + [Case(op, 128, 96, 55, dt, channels_last=True) for dt in (torch.float32, torch.bfloat16)])


def _torch_op(op: str):
    if op == "lrn":
        return lambda t: F.local_response_norm(t, *LRN_ARGS)
    if op == "max_pool":
        return lambda t: F.max_pool2d(t, *POOL_ARGS)
    return lambda t: F.max_pool2d(F.local_response_norm(F.relu(t), *LRN_ARGS), *POOL_ARGS)


def _fastalex_op(op: str, backend: str):
    fn = {"lrn": lambda t: fa.local_response_norm(t, *LRN_ARGS),
          "max_pool": lambda t: fa.max_pool2d(t, *POOL_ARGS),
          "relu_lrn_max_pool": lambda t: fa.relu_lrn_max_pool2d(t, *LRN_ARGS, *POOL_ARGS)}[op]

    def call(t):
        with fastalex.backend(backend):
            return fn(t)

    return call


_COMPILED: dict = {}


def fns(case: Case, backend: str, x: torch.Tensor, grad: torch.Tensor):
    """(forward, forward+backward) closures for a fastalex backend, "torch" (eager torch.nn.functional)
    or "torch.compile" (the same torch code compiled by inductor, once per op)."""
    if backend == "torch":
        call = _torch_op(case.op)
    elif backend == "torch.compile":
        if case.op not in _COMPILED:
            # Static shapes, as torch.compile would serve one model; every case is a new shape, so let
            # dynamo keep more than its default 8 specialisations before it falls back to eager.
            import torch._dynamo.config as cfg

            name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
            setattr(cfg, name, max(getattr(cfg, name), 64))
            _COMPILED[case.op] = torch.compile(_torch_op(case.op), dynamic=False)
        call = _COMPILED[case.op]
    else:
        call = _fastalex_op(case.op, backend)
    xg = x.detach().clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            return call(x)

    def forward_backward():
        xg.grad = None
        call(xg).backward(grad)

    return forward, forward_backward


@dataclasses.dataclass
class Row:
    op: str  # "<operator>_fwd" or "<operator>_fwd+bwd" (or "_bwd")
    case: str
    backend: str
    ms: float
    ref_ms: float
    work: float  # bytes the operator must move (unit GB/s) or FLOPs it does (unit TFLOP/s)
    peak: float  # the device's copy bandwidth (GB/s) or bf16 matmul rate (TFLOP/s), measured in the run
    ref: str = "torch"  # what ref_ms timed: "torch" (eager) or "torch.compile"
    unit: str = "GB/s"

    @property
    def rate(self) -> float:
        return self.work / (self.ms * 1e-3) / {"GB/s": 1e9, "TFLOP/s": 1e12, "img/s": 1.0}[self.unit]

    @property
    def frac(self) -> float:
        return self.rate / self.peak if self.peak else float("nan")

    @property
    def speedup(self) -> float:
        return self.ref_ms / self.ms

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(rate=self.rate, frac_of_peak=self.frac, speedup=self.speedup)
        return d


def measure(case: Case, backend: str, device: torch.device, copy_gbps: float, ref_ms: dict | None = None,
            refs: tuple[str, ...] = ("torch",), kinds: tuple[str, ...] = ("fwd", "fwd+bwd")) -> list[Row]:
    """Rows for `backend` against each reference in `refs` (eager torch, "torch.compile") on the same
    inputs, for each of `kinds` ("fwd", "fwd+bwd"). ref_ms caches the references' timings by
    (case, op, kind, ref), so several backends share one measurement."""
    x, grad = case.make(device)
    nbytes = dict(zip(("fwd", "fwd+bwd"), case.traffic(x, grad)))
    ref_ms = {} if ref_ms is None else ref_ms
    ours = dict(zip(("fwd", "fwd+bwd"), fns(case, backend, x, grad)))
    ours_ms = {kind: time_ms(ours[kind], device) for kind in kinds}
    rows = []
    for ref in refs:
        theirs = dict(zip(("fwd", "fwd+bwd"), fns(case, ref, x, grad)))
        for kind in kinds:
            key = (case.name, case.op, kind, ref)
            if key not in ref_ms:
                ref_ms[key] = time_ms(theirs[kind], device)
            rows.append(Row(f"{case.op}_{kind}", case.name, backend, ours_ms[kind], ref_ms[key], nbytes[kind],
                            copy_gbps, ref))
    return rows


def format_table(rows: list[Row], device_name: str, copy_gbps: float, matmul_tflops: float | None = None) -> str:
    head = f"device: {device_name}; copy bandwidth {copy_gbps:.0f} GB/s (read+write)"
    if matmul_tflops:
        head += f", bf16 matmul {matmul_tflops:.0f} TFLOP/s"
    lines = [head + "; both measured in this run; % of peak: of the copy bandwidth for GB/s rows, of the matmul "
                    "rate for TFLOP/s rows",
             f"{'op':<26} {'case':<26} {'backend':<8} {'ms':>9} {'vs':<13} {'its ms':>9} {'speedup':>8} "
             f"{'rate':>15} {'% peak':>7}"]
    for r in rows:
        lines.append(f"{r.op:<26} {r.case:<26} {r.backend:<8} {r.ms:>9.4f} {r.ref:<13} {r.ref_ms:>9.4f} "
                     f"{r.speedup:>7.2f}x {r.rate:>7.1f} {r.unit:<7} "
                     + (f"{100 * r.frac:>6.1f}%" if r.peak else f"{'-':>7}"))
    return "\n".join(lines)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment() -> dict:
    import platform

    info = {"torch": torch.__version__, "python": platform.python_version(), "fastalex": fastalex.__version__}
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception:  # noqa: BLE001
        info["triton"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


# --- Convolutions: AlexNet's five (paper variant), fastalex's conv+bias+ReLU against torch's
# convolution (cuDNN on a GPU) followed by a separate ReLU, and an explicit pad where the padding is
# asymmetric (conv1), as a torch user must write it.

@dataclasses.dataclass
class ConvCase:
    layer: str
    batch: int
    c_in: int
    hw: int
    c_out: int
    kernel: int
    stride: int
    padding: tuple[int, int, int, int]  # left, right, top, bottom
    dtype: torch.dtype
    channels_last: bool = True

    @property
    def name(self) -> str:
        dt = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        return f"{self.layer} {self.batch}x{self.c_in}x{self.hw}x{self.hw} {dt}{' cl' if self.channels_last else ''}"

    @property
    def input_grad(self) -> bool:
        return self.layer != "conv1"  # the first layer's input (the image) needs no gradient

    @property
    def out_hw(self) -> int:
        left, right, _, _ = self.padding
        return (self.hw + left + right - self.kernel) // self.stride + 1

    def flops(self) -> tuple[float, float]:
        """(forward, forward+backward) FLOPs: 2 N Ho Wo Cout Cin k^2 per GEMM; the backward is one GEMM
        (grad_weight) for conv1 and two (grad_input too) for the others."""
        fwd = 2.0 * self.batch * self.out_hw**2 * self.c_out * self.c_in * self.kernel**2
        return fwd, fwd * (3 if self.input_grad else 2)

    def make(self, device: torch.device, seed: int = 0):
        g = torch.Generator(device=device).manual_seed(seed)
        x = torch.randn(self.batch, self.c_in, self.hw, self.hw, generator=g, device=device).to(self.dtype)
        w = (torch.randn(self.c_out, self.c_in, self.kernel, self.kernel, generator=g, device=device)
             / (self.c_in * self.kernel**2) ** 0.5).to(self.dtype)
        b = torch.randn(self.c_out, generator=g, device=device).mul_(0.1).to(self.dtype)
        grad = torch.randn(self.batch, self.c_out, self.out_hw, self.out_hw, generator=g, device=device).to(self.dtype)
        if self.channels_last:
            x, w, grad = (t.to(memory_format=torch.channels_last) for t in (x, w, grad))
        return x, w, b, grad


def conv_cases(device: torch.device, quick: bool = False) -> list[ConvCase]:
    """AlexNet's convolutions (paper variant) at batch 128 on a GPU; quick: conv1 and conv3 at batch 2."""
    layers = [("conv1", 3, 224, 96, 11, 4, (1, 2, 1, 2)), ("conv2", 96, 27, 256, 5, 1, (2, 2, 2, 2)),
              ("conv3", 256, 13, 384, 3, 1, (1, 1, 1, 1)), ("conv4", 384, 13, 384, 3, 1, (1, 1, 1, 1)),
              ("conv5", 384, 13, 256, 3, 1, (1, 1, 1, 1))]
    if quick:
        return [ConvCase(*layers[0][:1], 2, *layers[0][1:], torch.float32),
                ConvCase(*layers[2][:1], 2, *layers[2][1:], torch.float32)]
    return [ConvCase(layer, 128, *rest, dtype) for dtype in (torch.bfloat16, torch.float32)
            for layer, *rest in layers]


def conv_fns(case: ConvCase, backend: str, x, w, b, grad):
    """(forward, forward+backward) closures: fastalex's conv2d_relu on `backend`, or "torch" (conv2d,
    an F.pad first where the padding is asymmetric, then a separate ReLU)."""
    left, right, top, bottom = case.padding
    if backend == "torch":
        def call(inp, weight, bias):
            if left == right and top == bottom:
                return F.relu(F.conv2d(inp, weight, bias, case.stride, (top, left)))
            return F.relu(F.conv2d(F.pad(inp, case.padding), weight, bias, case.stride))
    else:
        def call(inp, weight, bias):
            with fastalex.backend(backend):
                return fa.conv2d_relu(inp, weight, bias, case.stride, case.padding)
    xg = x.detach().clone().requires_grad_(case.input_grad)
    wg, bg = w.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            return call(x, w, b)

    def forward_backward():
        xg.grad = wg.grad = bg.grad = None
        call(xg, wg, bg).backward(grad)

    return forward, forward_backward


def measure_conv(case: ConvCase, backend: str, device: torch.device, matmul: float, ref_ms: dict | None = None,
                 kinds: tuple[str, ...] = ("fwd", "fwd+bwd")) -> list[Row]:
    """Rows for fastalex's conv2d_relu on `backend` against torch's, in TFLOP/s of the bf16 matmul rate."""
    x, w, b, grad = case.make(device)
    flops = dict(zip(("fwd", "fwd+bwd"), case.flops()))
    ref_ms = {} if ref_ms is None else ref_ms
    ours = dict(zip(("fwd", "fwd+bwd"), conv_fns(case, backend, x, w, b, grad)))
    theirs = dict(zip(("fwd", "fwd+bwd"), conv_fns(case, "torch", x, w, b, grad)))
    rows = []
    for kind in kinds:
        key = (case.name, "conv", kind, "torch")
        if key not in ref_ms:
            ref_ms[key] = time_ms(theirs[kind], device)
        rows.append(Row(f"conv_relu_{kind}", case.name, backend, time_ms(ours[kind], device), ref_ms[key],
                        flops[kind], matmul, "torch", "TFLOP/s"))
    return rows


# --- The whole model: a training step (forward, cross-entropy, backward, SGD with momentum and weight
# decay) and inference, fastalex.AlexNet against reference_alexnet with the same weights.

@dataclasses.dataclass
class ModelCase:
    variant: str
    batch: int
    size: int
    autocast: torch.dtype | None  # None: fp32

    @property
    def name(self) -> str:
        amp = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[self.autocast]
        return f"{self.variant} {self.batch}x3x{self.size}x{self.size} {amp}"


def model_cases(device: torch.device, quick: bool = False) -> list[ModelCase]:
    """Batch 128 at 224 on a GPU (bf16 autocast and fp32); batch 8 on the CPU; quick: batch 2 at 64."""
    if quick:
        return [ModelCase("paper", 2, 64, None)]
    if device.type != "cuda":
        return [ModelCase("paper", 8, 224, None)]
    return [ModelCase("paper", 128, 224, torch.bfloat16), ModelCase("paper", 128, 224, None)]


def model_fns(case: ModelCase, which: str, device: torch.device):
    """(inference, train step) closures for "fastalex" (fastalex.AlexNet on the default backend),
    "fastalex.compile" (the same under torch.compile), "torch" (reference_alexnet, eager) or
    "torch.compile" (reference_alexnet compiled)."""
    from fastalex.models import AlexNet, reference_alexnet

    torch.manual_seed(0)
    ref = reference_alexnet(case.variant).to(device)
    model = ref
    if which.startswith("fastalex"):
        model = AlexNet(variant=case.variant).to(device)
        model.load_state_dict(ref.state_dict())
        if which == "fastalex.compile":
            model = torch.compile(model)
    elif which == "torch.compile":
        model = torch.compile(ref)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    g = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(case.batch, 3, case.size, case.size, generator=g, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 1000, (case.batch,), generator=g, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

    def amp():
        return torch.autocast(device.type, dtype=case.autocast, enabled=case.autocast is not None)

    def inference():
        model.eval()
        with torch.no_grad(), amp():
            return model(x)

    def train_step():
        model.train()
        opt.zero_grad(set_to_none=True)
        with amp():
            loss = F.cross_entropy(model(x), target)
        loss.backward()
        opt.step()

    return inference, train_step


def measure_model(case: ModelCase, device: torch.device, refs: tuple[str, ...] = ("torch",)) -> list[Row]:
    """Inference and train-step rows (img/s) for fastalex.AlexNet against each reference; with
    "torch.compile" among them, fastalex under torch.compile against it too."""
    def timed(which):
        fns = dict(zip(("inference", "train_step"), model_fns(case, which, device)))
        return {kind: time_ms(fn, device, warmup=3, samples=5, budget_s=2.0) for kind, fn in fns.items()}

    pairs = [("fastalex", ref) for ref in refs]
    if "torch.compile" in refs:
        pairs.append(("fastalex.compile", "torch.compile"))
    ms = {which: timed(which) for which in dict.fromkeys(w for pair in pairs for w in pair)}
    return [Row(f"alexnet_{kind}", case.name, ours, ms[ours][kind], ms[ref][kind], case.batch, 0.0, ref, "img/s")
            for ours, ref in pairs for kind in ("inference", "train_step")]


def plot(rows: list[Row], path: str, title: str) -> None:
    """The speed-ups as horizontal bars, one per row, against 1x (torch), to a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("--plot needs matplotlib: pip install matplotlib") from e
    labels = [f"{r.op} {r.case} [{r.backend} vs {r.ref}]" for r in rows]
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(rows) + 1.5))
    ax.barh(range(len(rows)), [r.speedup for r in rows], color=["tab:green" if r.speedup >= 1 else "tab:red"
                                                                   for r in rows])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("speed-up over the reference (log scale)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- The input pipeline: the paper's augmentation on the device, and a whole training epoch.

@dataclasses.dataclass
class AugmentCase:
    batch: int
    size: int  # stored images (uint8)
    crop: int

    @property
    def name(self) -> str:
        return f"{self.batch}x3x{self.size}->{self.crop} uint8"


def augment_cases(device: torch.device, quick: bool = False) -> list[AugmentCase]:
    """Batch 128, 256 -> 224 (the paper's); quick: batch 4, 72 -> 64."""
    return [AugmentCase(4, 72, 64)] if quick else [AugmentCase(128 if device.type == "cuda" else 32, 256, 224)]


def augment_fn(case: AugmentCase, device: torch.device):
    """One training batch's augmentation as `fastalex train` runs it: random crop + flip, PCA colour
    noise and normalisation of a uint8 batch already on the device (channels_last out on a GPU)."""
    from fastalex import transforms

    g = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (case.batch, 3, case.size, case.size), generator=g, device=device,
                           dtype=torch.uint8)
    crop, lighting, normalize = transforms.RandomCropFlip(case.crop), transforms.PCALighting(), transforms.Normalize()
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    def run():
        x = lighting(crop(images, generator=g), generator=g)
        return normalize(x).contiguous(memory_format=layout)

    return run


def measure_augment(case: AugmentCase, device: torch.device) -> Row:
    """img/s of the augmentation against the model's training step at the same batch and crop
    (fastalex.AlexNet, bf16 autocast on a GPU): the speed-up column is how many times faster the
    pipeline is than the training it feeds (target >= 10x)."""
    ms = time_ms(augment_fn(case, device), device)
    step = ModelCase("paper", case.batch, case.crop, torch.bfloat16 if device.type == "cuda" else None)
    _, train_step = model_fns(step, "fastalex", device)
    step_ms = time_ms(train_step, device, warmup=3, samples=5, budget_s=2.0)
    return Row("augment", case.name, "fastalex", ms, step_ms, case.batch, 0.0, "train step", "img/s")


def measure_train_epoch(device: torch.device, quick: bool = False, preload: bool = True,
                        workers: int | None = None) -> tuple[Row, dict]:
    """One epoch of `fastalex train` on the default synthetic dataset with the device's defaults
    (GPU: 12800 images, batch 128, 256 -> 224, bf16; quick: 64 images at 72 -> 64), its images
    preloaded on the device (the default) or, preload=False, drawn by the loader workers every step
    as a folder's images are decoded.

    The row's ms is the wall time per step and its reference the same without the time spent waiting
    for the loader, so the speed-up column is the fraction of the time NOT spent waiting (target
    >= 0.95x on a GPU). The dict is the epoch's metrics row."""
    import tempfile

    from fastalex.training import TrainConfig, train

    sizes = dict(train_images=64, val_images=16, image_size=72, crop_size=64, batch_size=8) if quick else {}
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(out=out, epochs=1, device=str(device), progress=False, plot=False, workers=workers,
                             preload=preload, **sizes)
        result = train(config)
    row, config = result["history"][0], result["config"]
    steps = config.train_images // config.batch_size
    step_ms = row["epoch_s"] / steps * 1e3
    case = (f"{config.train_images}x{config.image_size}->{config.crop_size} {config.amp} "
            + ("preloaded" if preload else f"{config.workers} workers"))
    return Row("train_epoch", case, "fastalex", step_ms, step_ms * (1 - row["data_wait_frac"]),
               config.batch_size, 0.0, "no data wait", "img/s"), row
