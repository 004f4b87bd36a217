"""A benchmark row (one measurement against its reference), the table `fastalex bench` prints, and the
speed-up plot."""
from __future__ import annotations

import dataclasses

# Rows whose "speedup" is not a speed-up over a reference: the share of a training epoch not spent
# waiting for data (1.0 = never waited). Shown apart in the plot, with their own label.
FRACTION_OPS = ("train_epoch",)


def _why_noisy(ms: float) -> str:
    why = getattr(ms, "why_noisy", None)  # fastalex.bench.timing.Timing
    return why() if why is not None else ""


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
    # Not to be trusted: a timing's samples spread by more than timing.NOISY_SPREAD (max / min), or the
    # load average exceeded the cores while it ran. Set from ms and ref_ms when they are timing.Timing
    # (what time_ms returns); `noise` says why.
    noisy: bool = False
    noise: str = ""

    def __post_init__(self):
        why = [w for w in (_why_noisy(self.ms), _why_noisy(self.ref_ms)) if w]
        if why and not self.noise:
            self.noise = "; ".join(dict.fromkeys(why))
        self.noisy = bool(self.noisy or why)

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
        d.update(ms=float(self.ms), ref_ms=float(self.ref_ms), rate=self.rate, frac_of_peak=self.frac,
                 speedup=self.speedup)
        return d


NOISY_MARK = "~"


def noise_note(rows: list[Row]) -> str | None:
    """The line printed once above a table with noisy rows, or None."""
    noisy = [r for r in rows if r.noisy]
    if not noisy:
        return None
    from fastalex.bench.timing import NOISY_SPREAD

    return (f"{NOISY_MARK} marks {len(noisy)} noisy row(s): their samples spread by more than {NOISY_SPREAD}x "
            f"(max/min) or the load average exceeded the core count while they ran (other work on the machine); "
            f"repeat them on an idle machine before quoting them")


def format_table(rows: list[Row], device_name: str, copy_gbps: float, matmul_tflops: float | None = None) -> str:
    head = f"device: {device_name}; copy bandwidth {copy_gbps:.0f} GB/s (read+write)"
    if matmul_tflops:
        head += f", bf16 matmul {matmul_tflops:.0f} TFLOP/s"
    lines = [head + "; both measured in this run; % of peak: of the copy bandwidth for GB/s rows, of the matmul "
                    "rate for TFLOP/s rows"]
    note = noise_note(rows)
    if note:
        lines.append(note)
    lines.append(f"  {'op':<26} {'case':<26} {'backend':<8} {'ms':>9} {'vs':<13} {'its ms':>9} {'speedup':>8} "
                 f"{'rate':>15} {'% peak':>7}  noise")
    for r in rows:
        lines.append(f"{NOISY_MARK if r.noisy else ' '} {r.op:<26} {r.case:<26} {r.backend:<8} {r.ms:>9.4f} "
                     f"{r.ref:<13} {r.ref_ms:>9.4f} {r.speedup:>7.2f}x {r.rate:>7.1f} {r.unit:<7} "
                     + (f"{100 * r.frac:>6.1f}%" if r.peak else f"{'-':>7}") + (f"  {r.noise}" if r.noisy else ""))
    return "\n".join(lines)


def plot(rows: list[Row], path: str, title: str) -> None:
    """The speed-ups as horizontal bars, one per row, against 1x (torch), to a PNG; each bar carries its
    value (noisy rows hatched and marked). The train_epoch rows, whose figure is the share of an epoch
    not spent waiting for data rather than a speed-up, are drawn apart on their own 0..1 axis."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("--plot needs matplotlib: pip install matplotlib") from e
    speed = [r for r in rows if r.op not in FRACTION_OPS]
    fraction = [r for r in rows if r.op in FRACTION_OPS]
    panels = [p for p in (speed, fraction) if p]
    if not panels:
        raise ValueError("no rows to plot")
    heights = [0.32 * len(p) + 0.9 for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, sum(heights) + 0.8), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, panel in zip(axes[:, 0], panels):
        _bars(ax, panel, fractions=panel is fraction)
    axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bars(ax, rows: list[Row], fractions: bool) -> None:
    labels = [f"{NOISY_MARK + ' ' if r.noisy else ''}{r.op} {r.case} [{r.backend} vs {r.ref}]" for r in rows]
    values = [r.speedup for r in rows]
    if fractions:
        colors = ["tab:blue"] * len(rows)
        texts = [f"{100 * v:.1f}% not waiting" for v in values]
    else:
        colors = ["tab:green" if v >= 1 else "tab:red" for v in values]
        texts = [f"{v:.2f}x" for v in values]
    bars = ax.barh(range(len(rows)), values, color=colors)
    for bar, r in zip(bars, rows):
        if r.noisy:
            bar.set_hatch("//")
            bar.set_alpha(0.6)
    ax.bar_label(bars, labels=[t + (" (noisy)" if r.noisy else "") for t, r in zip(texts, rows)],
                 padding=3, fontsize=7)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    if fractions:
        ax.set_xlim(0, 1.25)
        ax.set_xlabel("train_epoch: share of the epoch not spent waiting for data (1 = never waited; not a "
                      "speed-up)", fontsize=8)
    else:
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        low, high = min(values + [1.0]), max(values + [1.0])
        ax.set_xlim(low / 1.5, high * 3.0)  # room for the values at the bars' ends
        ax.set_xlabel("speed-up over the reference (log scale)", fontsize=8)
