"""A benchmark row (one measurement against its reference), the table `fastalex bench` prints, and the
speed-up plot."""
from __future__ import annotations

import dataclasses


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
