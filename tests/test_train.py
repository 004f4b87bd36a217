"""fastalex.train (`fastalex train` / `fastalex eval`) on the CPU at a tiny size: learning, exact resume, Ctrl-C,
atomic checkpoints, DDP (gloo, 2 processes) against one process at twice the batch, bad inputs."""
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fastalex
from fastalex import data
from fastalex.__main__ import main
from fastalex.train import TrainConfig, run_eval, train
from fastalex.train import checkpoint as ckpt
from numerics import DDP_LOSS_SUMS, DDP_WEIGHTS

pytestmark = pytest.mark.skipif("cpu" not in fastalex.backends(), reason="needs the C++ extension's CPU kernels")

REPO = Path(__file__).resolve().parents[1]


def tiny(tmp_path, **kw) -> TrainConfig:
    """64 px crops of 72 px synthetic images: the smallest the paper variant takes; the lr warms up over
    the first 4 steps (so that resumed runs cross the warm-up too)."""
    base = dict(out=str(tmp_path / "run"), device="cpu", epochs=1, batch_size=8, image_size=72, crop_size=64,
                train_images=48, val_images=24, workers=0, progress=False, plot=False, seed=3, warmup_steps=4)
    base.update(kw)
    return TrainConfig(**base)


def weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a: dict, b: dict, **tol) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if tol:
            torch.testing.assert_close(a[k], b[k], **tol, msg=lambda m, k=k: f"{k}: {m}")
        else:
            assert torch.equal(a[k], b[k]), k


def test_training_lowers_the_loss_and_writes_logs_checkpoints_and_plot(tmp_path, capsys):
    # 60 steps of batch 16 at 64 px; the loss starts at ln(12) = 2.48 (the last layer is near zero)
    config = tiny(tmp_path, epochs=5, batch_size=16, train_images=192, val_images=48, lr=0.003, dropout=0.0,
                  plot=True, preload=False, workers=1)  # drawn in a loader process every epoch
    result = train(config)
    history = result["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    assert result["steps"] == 5 * 12 and not result["stopped"]
    chance = math.log(12)
    assert history[-1]["train_loss"] < chance - 0.25 and history[-1]["val_loss"] < chance, history
    out = Path(config.out)
    assert (out / "checkpoint.pt").is_file() and (out / "best.pt").is_file() and (out / "curves.png").is_file()
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,lr,train_loss") and len(rows) == 6
    logged = json.loads((out / "metrics.json").read_text())
    assert logged[-1]["val_top5_err"] <= logged[-1]["val_top1_err"]
    assert 0 <= logged[-1]["data_wait_frac"] <= 1 and logged[-1]["img_per_s"] > 0
    assert not list(out.glob("*.tmp")), "a temporary checkpoint file was left behind"
    # the last line sums it up: the best error, and the files with their sizes
    best = min(history, key=lambda row: row["val_top1_err"])
    last = capsys.readouterr().err.splitlines()[-1]
    assert re.fullmatch(rf"fastalex train: best validation top-1 error {100 * best['val_top1_err']:.1f}% \(epoch "
                        rf"{best['epoch']}, top-5 [0-9.]+%\); in {re.escape(str(out))}: checkpoint.pt \(\d+ MB\), "
                        r"best.pt \(\d+ MB\), metrics.csv \([0-9.]+ kB\), metrics.json \([0-9.]+ kB\), "
                        r"curves.png \([0-9.]+ kB\)", last), last


@pytest.mark.parametrize("stop_at,preload", [(3, True), (6, False)], ids=["mid-epoch", "epoch-end-from-workers"])
def test_resume_continues_exactly(tmp_path, stop_at, preload):
    # 6 steps per epoch; a straight run of 8 steps against a run stopped at stop_at and resumed.
    train(tiny(tmp_path, out=str(tmp_path / "straight"), epochs=2, max_steps=8))
    first = train(tiny(tmp_path, out=str(tmp_path / "split"), epochs=2, max_steps=stop_at))
    assert first["steps"] == stop_at
    # preload=False: resumed with the images drawn by the loader, not preloaded; the same images.
    # max_steps counts the steps of this invocation: 8 - stop_at more make 8.
    resumed = train(tiny(tmp_path, out=str(tmp_path / "split"), epochs=2, max_steps=8 - stop_at, preload=preload),
                    resume=tmp_path / "split" / "checkpoint.pt")
    assert resumed["steps"] == 8
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True) for d in ("straight", "split"))
    assert_same_weights(a["model"], b["model"])
    # the loss sums of the second epoch so far, step by step the same
    assert torch.equal(a["meter"][0]["sums"], b["meter"][0]["sums"])
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]


class _InterruptAt(torch.utils.data.Dataset):
    """Sends this process SIGINT when image `at` is read, as a Ctrl-C would (workers=0)."""

    def __init__(self, inner, at):
        self.inner, self.at, self.classes = inner, at, inner.classes

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        if i == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return self.inner[i]


def test_ctrl_c_finishes_the_step_and_checkpoints(tmp_path, monkeypatch):
    from fastalex.train import loop

    build = loop.load_data

    def interrupted(config):
        train_set, val_set, classes, described = build(config)
        # the first image of the third batch of epoch 0's order
        first_of_third = data.ShardedSampler(len(train_set), config.batch_size, config.seed)._indices()[
            2 * config.batch_size]
        return _InterruptAt(train_set, first_of_third), val_set, classes, described

    monkeypatch.setattr(loop, "load_data", interrupted)
    result = train(tiny(tmp_path, epochs=2, preload=False))  # images read as the steps need them
    assert result["stopped"] and result["steps"] == 3  # the interrupted step ran to completion
    state = ckpt.load(Path(result["out"]) / "checkpoint.pt")
    assert (state["epoch"], state["batch"], state["step"]) == (0, 3, 3)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_resume_after_max_steps_runs_on_and_a_finished_run_says_so(tmp_path, capsys):
    config = tiny(tmp_path, max_steps=2)
    train(config)
    path = Path(config.out) / "checkpoint.pt"
    result = train(tiny(tmp_path), resume=path)  # --max-steps belonged to the first invocation
    assert result["steps"] == 6 and not result["interrupted"] and len(result["history"]) == 1
    result = train(tiny(tmp_path), resume=path)
    assert result["steps"] == 6 and "nothing to do, all 1 epochs are done" in capsys.readouterr().err


@pytest.mark.parametrize("epochs", [2, 3], ids=["mid-epoch", "epoch-end"])
def test_max_steps_on_resume_counts_the_steps_of_this_invocation(tmp_path, epochs):
    # README: --max-steps counts for one invocation. Resumed at step S (mid-epoch: 2; at an epoch's end: 6,
    # where it used to run nothing and rewrite checkpoint.pt), --max-steps N ends at S + N.
    first = train(tiny(tmp_path, epochs=epochs - 1, max_steps=2 if epochs == 2 else None))
    start = first["steps"]
    path = Path(first["out"]) / "checkpoint.pt"
    result = train(tiny(tmp_path, epochs=epochs, max_steps=3), resume=path)
    assert result["steps"] == start + 3 and result["stopped"]
    state = ckpt.load(path)
    assert (state["step"], state["epoch"], state["batch"]) == (start + 3, start // 6, start % 6 + 3)
    result = train(tiny(tmp_path, epochs=epochs + 1, max_steps=4), resume=path)  # 4 more, across an epoch end
    assert result["steps"] == start + 7 and ckpt.load(path)["step"] == start + 7


def _cli(tmp_path, *extra) -> list[str]:
    return ["train", "--device", "cpu", "--batch-size", "8", "--image-size", "72", "--crop-size", "64",
            "--train-images", "48", "--val-images", "24", "--workers", "0", "--no-progress", "--no-plot",
            "--seed", "3", "--out", str(tmp_path / "run"), *extra]


def test_resume_refuses_an_option_typed_with_another_value_even_the_default(tmp_path, capsys):
    # README: "any other option given with a value other than the saved one raises". An option typed on the
    # command line is given even with its default value (--seed 0): it used to be ignored, as --lr 0.01 was
    # when 0.01 was the default, the saved value kept silently.
    assert main(_cli(tmp_path, "--lr", "0.02", "--max-steps", "2")) == 0
    path = str(tmp_path / "run" / "checkpoint.pt")
    capsys.readouterr()
    for option, value, saved in (("--lr", "0.01", "0.02"), ("--seed", "0", "3")):
        assert main(["train", "--resume", path, option, value, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err == ("fastalex train: error: --resume continues the saved run with its own options; these differ: "
                       f"{option} {value} (saved: {saved})\n"), err
    assert ckpt.load(path)["step"] == 2  # refused before anything ran
    # the saved value typed again, and options --resume may change, are fine; --max-steps 1: one more step
    assert main(["train", "--resume", path, "--lr", "0.02", "--seed", "3", "--batch-size", "8", "--epochs", "2",
                 "--max-steps", "1", "--no-progress", "--workers", "0"]) == 0
    state = ckpt.load(path)
    assert state["step"] == 3 and state["config"]["lr"] == 0.02 and state["config"]["epochs"] == 2


def test_cli_errors_are_one_line_without_internal_names(tmp_path, capsys):
    cases = [(["--lr", "0"], "fastalex train: error: --lr must be > 0, got 0"),
             (["--data", str(tmp_path / "nonexistent")], f"fastalex train: error: --data: {tmp_path / 'nonexistent'} "
                                                          "does not exist"),
             (["--resume", str(tmp_path / "missing.pt")], f"fastalex train: error: checkpoint "
                                                          f"'{tmp_path / 'missing.pt'}' does not exist")]
    for args, line in cases:
        assert main(_cli(tmp_path, *args)) == 2, args
        err = capsys.readouterr().err
        assert err == line + "\n", (args, err)
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.pt"), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"fastalex eval: error: checkpoint '{tmp_path / 'missing.pt'}' does not exist\n"


def test_cli_prepare_error_is_one_line_without_internal_names(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "nonexistent"), str(tmp_path / "dst"), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "prepare_image_folder" not in err and "nonexistent does not exist" in err, err


class _SigintMidWrite:
    """A file for torch.save that sends this process SIGINT during its third write, as a second Ctrl-C
    would: the handler's exception then surfaces inside torch's zip writer, which raises its own
    RuntimeError ("[enforce fail at inline_container.cc ...] unexpected pos") with it as the context."""

    def __init__(self, f):
        self.f, self.writes = f, 0

    def write(self, b):
        self.writes += 1
        if self.writes == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return self.f.write(b)

    def flush(self):
        return self.f.flush()


def test_second_ctrl_c_during_the_checkpoint_write_aborts_in_one_line(tmp_path, monkeypatch, capsys):
    # One epoch (checkpoint.pt at step 6), then a resumed run: a first Ctrl-C during step 9 (the 3rd of
    # epoch 2) stops it after that step, and a second lands in the middle of the checkpoint's torch.save
    # (two chained tracebacks, the last an inline_container error, used to end the command).
    from fastalex.train import loop

    assert main(_cli(tmp_path, "--epochs", "1")) == 0
    path = tmp_path / "run" / "checkpoint.pt"
    build = loop.load_data

    def interrupted(config):
        train_set, val_set, classes, described = build(config)
        sampler = data.ShardedSampler(len(train_set), config.batch_size, config.seed)
        sampler.set_epoch(1)
        return _InterruptAt(train_set, sampler._indices()[2 * config.batch_size]), val_set, classes, described

    real_save = torch.save
    monkeypatch.setattr(loop, "load_data", interrupted)
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **kw: real_save(obj, _SigintMidWrite(f), *a, **kw))
    capsys.readouterr()
    code = main(["train", "--resume", str(path), "--epochs", "2", "--no-preload", "--no-progress"])
    monkeypatch.setattr(torch, "save", real_save)
    err = capsys.readouterr().err
    assert code == 130, err
    assert "Traceback" not in err and "inline_container" not in err, err
    assert err.splitlines()[-1] == f"fastalex train: aborted; the previous checkpoint is intact ({path})", err
    assert err.count("aborted") == 1
    assert ckpt.load(path)["step"] == 6  # the previous checkpoint, whole
    assert sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_lr_warms_up_linearly_then_holds(tmp_path):
    # step s (from 0) of the first warmup_steps runs at lr * (s + 1) / warmup_steps; the optimizer keeps the last
    for steps, expected in ((3, 0.04 * 3 / 4), (5, 0.04)):
        result = train(tiny(tmp_path, out=str(tmp_path / f"w{steps}"), lr=0.04, max_steps=steps))
        state = ckpt.load(Path(result["out"]) / "checkpoint.pt")
        assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(expected), steps


def test_cpu_and_gpu_defaults():
    # the paper's recipe on a GPU; the demo's on the CPU (benchmarks/RESULTS.md: it learns in about 2 minutes)
    gpu, cpu = (TrainConfig().resolved(torch.device(d)) for d in ("cuda", "cpu"))
    assert (gpu.lr, gpu.dropout, gpu.warmup_steps, gpu.batch_size, gpu.crop_size, gpu.epochs) == (0.01, 0.5, 0, 128,
                                                                                                  224, 30)
    assert (cpu.lr, cpu.dropout, cpu.warmup_steps, cpu.batch_size, cpu.crop_size, cpu.image_size) == (0.005, 0.0, 36,
                                                                                                      32, 64, 72)
    assert TrainConfig(lr=0.02, dropout=0.3).resolved(torch.device("cpu")).lr == 0.02  # given options stay


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_atomic({"format": ckpt.FORMAT, "version": 1}, path)
    real_save = torch.save

    def dies_halfway(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_atomic({"format": ckpt.FORMAT, "version": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=True)["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_eval_centre_and_ten_crop(tmp_path, capsys):
    config = tiny(tmp_path, max_steps=2)
    train(config)
    path = Path(config.out) / "checkpoint.pt"
    centre = run_eval(path, batch_size=5, progress=False)
    tens = run_eval(path, ten_crop=True, batch_size=5, progress=False)
    for r in (centre, tens):
        assert r["images"] == 24 and 0 <= r["top5_err"] <= r["top1_err"] <= 1 and r["loss"] > 0
    assert (centre["crops"], tens["crops"]) == ("centre crop", "ten-crop")
    assert main(["eval", "--checkpoint", str(path), "--ten-crop", "--no-progress", "--json",
                 str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "ten-crop" in out and "top-1 error" in out and "top-5 error" in out
    assert json.loads((tmp_path / "e.json").read_text())["top1_err"] == pytest.approx(tens["top1_err"])


def test_cli_train_with_defaults_for_the_cpu(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "cli"), "--max-steps", "2", "--train-images", "64",
                 "--val-images", "16", "--workers", "0", "--no-progress", "--device", "cpu"])
    assert code == 0
    state = ckpt.load(tmp_path / "cli" / "checkpoint.pt")
    assert state["config"]["crop_size"] == 64 and state["config"]["batch_size"] == 32 and state["step"] == 2


_FAULTS = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from fastalex.train.cli import keep_freed_memory
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(1)
for step in range(12):  # what a training step does with a big gradient: allocate, fill, free
    if step == 2:
        start = faults()
    x = torch.ones(40 << 20)
    del x
print(faults() - start)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_cli_keeps_freed_memory_instead_of_faulting_it_in_again():
    # 160 MB freed and allocated again 10 times: by default a page fault per 4 kB each time (10 x 40k), after
    # keep_freed_memory next to none (page faults were 45% of the CPU demo's step time)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    counts = {how: int(subprocess.run([sys.executable, "-c", _FAULTS, how], capture_output=True, text=True,
                                      check=True, env=env).stdout) for how in ("plain", "keep")}
    # (the window sometimes still catches a buffer's or two's 40k faults while the heap settles)
    assert counts["plain"] > 8 * 40_000 and counts["keep"] < counts["plain"] / 3, counts


@pytest.mark.slow
def test_cli_demo_learns(tmp_path, capsys):
    # `fastalex train` with no arguments, as a user first runs it (on the CPU: benchmarks/RESULTS.md has the
    # figures and the time, about 2 minutes on 2 cores: 49% top-1 error at the end). It used to end at 86%
    # (chance 91.7%).
    assert main(["train", "--out", str(tmp_path / "demo"), "--no-progress", "--device", "cpu"]) == 0
    history = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert len(history) == 6 and history[-1]["val_top1_err"] <= 0.60, [row["val_top1_err"] for row in history]
    assert "best validation top-1 error" in capsys.readouterr().err


# --- Several processes (gloo): 2 ranks at batch B against 1 process at batch 2B, after one step.

def _torchrun(nproc: int, args: list[str], tmp_path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_port=0",
           "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0", "-m", "fastalex", "train", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)


_SIGNAL_ONE_RANK = """
import os, signal, sys, torch
sys.path.insert(0, {tests!r})
from fastalex import data
from fastalex.train import TrainConfig, loop
from test_train import _InterruptAt

build = loop.load_data
def interrupted(config):
    train_set, val_set, classes, described = build(config)
    if os.environ["RANK"] != "0":
        return train_set, val_set, classes, described
    sampler = data.ShardedSampler(len(train_set), config.batch_size, config.seed, world=2, rank=0)
    return _InterruptAt(train_set, sampler._indices()[2 * config.batch_size]), val_set, classes, described
loop.load_data = interrupted
result = loop.train(TrainConfig(out={out!r}, device="cpu", epochs=2, batch_size=4, image_size=72,
    crop_size=64, train_images=48, val_images=8, workers=0, preload=False, progress=False, plot=False, log_every=2))
# one file per rank: two ranks printing to one pipe interleave their words under PYTHONUNBUFFERED=1
with open(os.path.join({out!r}, "steps." + os.environ["RANK"]), "w") as f:
    f.write(f"STEPS {{result['steps']}} {{result['interrupted']}}")
"""


def test_ddp_ctrl_c_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    # Rank 0 alone is signalled during its third step; the ranks agree at the next sync point (every
    # log_every = 2 steps), so both stop after step 4, and one checkpoint says so.
    script = tmp_path / "signal_one_rank.py"
    script.write_text(_SIGNAL_ONE_RANK.format(tests=str(Path(__file__).parent), out=str(tmp_path / "run")))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=0",
           "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0", str(script)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [(tmp_path / "run" / f"steps.{rank}").read_text() for rank in (0, 1)]
    assert reports == ["STEPS 4 True"] * 2, reports
    state = ckpt.load(tmp_path / "run" / "checkpoint.pt")
    assert (state["step"], state["batch"], state["world"]) == (4, 4, 2)


def test_ddp_two_ranks_match_one_process_at_twice_the_batch(tmp_path):
    common = ["--device", "cpu", "--image-size", "72", "--crop-size", "64", "--train-images", "32",
              "--val-images", "8", "--workers", "0", "--no-progress", "--no-plot", "--epochs", "1",
              "--max-steps", "1", "--dropout", "0", "--seed", "5"]
    two = _torchrun(2, common + ["--batch-size", "4", "--out", str(tmp_path / "two")], tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "fastalex", "train", *common, "--batch-size", "8", "--out",
                          str(tmp_path / "one")], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)))
    assert one.returncode == 0, one.stderr[-3000:]
    two_state, one_state = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True) for d in ("two", "one"))
    assert two_state["world"] == 2 and one_state["world"] == 1
    # the step changed the weights, and both runs changed them the same way (up to summation order)
    assert_same_weights(two_state["model"], one_state["model"], **DDP_WEIGHTS)
    torch.manual_seed(5)
    initial = fastalex.AlexNet(num_classes=12, init="kaiming", dropout=0.0).state_dict()
    assert all(not torch.equal(one_state["model"][k], initial[k]) for k in initial if k.endswith("weight"))
    # metrics reduced over both ranks: the loss sums of the step add up to the single process's
    two_sum = sum(m["sums"] for m in two_state["meter"])
    torch.testing.assert_close(two_sum, one_state["meter"][0]["sums"], **DDP_LOSS_SUMS)


# --- Bad input.

def test_batch_larger_than_the_dataset(tmp_path):
    with pytest.raises(ValueError, match=r"batch \(64 x 1 process\) is larger than the training set \(48 images\)"):
        train(tiny(tmp_path, batch_size=64))


@pytest.mark.parametrize("option,value,message", [
    ("crop_size", 80, "--crop-size 80 is larger than --image-size 72"),
    ("crop_size", 32, "--crop-size must be at least 64"),
    ("lr", 0.0, "--lr must be > 0"),
    ("lr", float("nan"), "--lr must be a finite number, got nan"),
    ("amp", "fp8", "--amp must be one of none, bf16, fp16"),
    ("epochs", 0, "--epochs must be >= 1, got 0"),
    ("amp", "fp16", "--amp fp16 needs a GPU"),
])
def test_bad_options(tmp_path, option, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(tiny(tmp_path, **{option: value}))


def _write_folder(root: Path, classes, per_class=4, size=(80, 90), corrupt=()):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=g, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    for name in corrupt:
        (root / name).write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")


def test_image_folder_training_skips_and_counts_corrupt_images(tmp_path, capsys):
    data = tmp_path / "data"
    _write_folder(data / "train", ["a", "b", "c"], per_class=6, corrupt=["a/bad.jpg", "b/empty.jpg"])
    (data / "train" / "b" / "empty.jpg").write_bytes(b"")
    _write_folder(data / "val", ["a", "b", "c"], per_class=2, corrupt=["c/bad.jpg"])
    result = train(tiny(tmp_path, data=str(data), batch_size=4))
    row = result["history"][0]
    assert row["skipped_images"] == 3 and (row["skipped_corrupt"], row["skipped_empty"]) == (2, 1)
    assert "3 files skipped (2 corrupt, 1 empty)" in capsys.readouterr().err
    # the checkpoint knows its classes: eval on folders with other classes is refused
    other = tmp_path / "other"
    _write_folder(other / "val", ["a", "b"], per_class=1)
    with pytest.raises(ckpt.CheckpointError, match=r"3 classes do not match the 2 folders.*only in the checkpoint: \['c'\]"):
        run_eval(Path(result["out"]) / "checkpoint.pt", str(other), progress=False)
    # ... and resuming on data whose classes changed is refused
    import shutil

    for split in ("train", "val"):
        shutil.rmtree(data / split / "c")
    with pytest.raises(ckpt.CheckpointError, match=r"trained on 3 classes .*the data has 2"):
        train(tiny(tmp_path, data=str(data), batch_size=4, epochs=2), resume=Path(result["out"]) / "checkpoint.pt")


def test_data_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(tiny(tmp_path, data=str(tmp_path / "nowhere")))
    data = tmp_path / "data"
    _write_folder(data / "train", ["a", "b"], per_class=4)
    _write_folder(data / "val", ["a", "c"], per_class=1)
    with pytest.raises(ValueError, match="only in train.*b.*only in val.*c"):
        train(tiny(tmp_path, data=str(data)))
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"), "--device", "cpu"]) == 2


def test_checkpoint_mismatches(tmp_path):
    config = tiny(tmp_path, max_steps=6)  # one whole epoch: checkpoint.pt and best.pt
    train(config)
    path, best = Path(config.out) / "checkpoint.pt", Path(config.out) / "best.pt"
    with pytest.raises(ckpt.CheckpointError, match="from the 'paper' variant of AlexNet, not 'torchvision'"):
        train(dataclasses.replace(config, variant="torchvision"), resume=path)
    with pytest.raises(ckpt.CheckpointError, match=r"these differ: --num-classes 5 \(saved: 12\)"):
        train(dataclasses.replace(config, num_classes=5, max_steps=7), resume=path)
    with pytest.raises(ckpt.CheckpointError, match=r"these differ: --lr 0.5 \(saved: 0.005\)"):
        train(dataclasses.replace(config, lr=0.5, max_steps=7), resume=path)
    with pytest.raises(ckpt.CheckpointError, match="holds weights only"):
        train(config, resume=best)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="unreadable or corrupt"):
        run_eval(tmp_path / "junk.pt", progress=False)
    torch.save(fastalex.AlexNet(num_classes=12).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a fastalex training checkpoint"):
        run_eval(tmp_path / "bare.pt", progress=False)
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        run_eval(tmp_path / "missing.pt", progress=False)
    with pytest.raises(ckpt.CheckpointError, match="has 12 classes, the data has 10"):
        ckpt.load(path, num_classes=10)
    assert run_eval(best, progress=False)["images"] == 24  # best.pt (weights only) evaluates


def test_cli_prepare_then_train_on_the_prepared_folder(tmp_path, capsys):
    src = tmp_path / "src"
    _write_folder(src / "train", ["a", "b"], per_class=4, size=(120, 90))
    _write_folder(src / "val", ["a", "b"], per_class=2, size=(90, 120), corrupt=["a/bad.jpg"])
    assert main(["prepare", str(src), str(tmp_path / "dst"), "--size", "72", "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 12 images" in printed and "skipped 1 unreadable" in printed
    train_set, val_set = data.image_folders(tmp_path / "dst", image_size=72)
    assert len(train_set) == 8 and len(val_set) == 4 and train_set[0][0].shape == (3, 72, 72)
    assert main(["prepare", str(src), str(src / "inside"), "--workers", "0"]) == 2
    assert "fastalex prepare: error:" in capsys.readouterr().err


@pytest.mark.gpu
def test_gpu_train_resume_and_ten_crop_eval(tmp_path):
    """The device path: pinned uint8 batches, augmentation on the GPU, bf16 autocast, channels_last,
    loader workers; resume equality and ten-crop evaluation on CUDA."""
    # 224 crops: conv5 pools to 6x6, so the adaptive pool is an identity and its backward (atomics on
    # CUDA) adds one term per element: bit-equal weights are a fair demand
    sizes = dict(device="cuda", epochs=2, batch_size=32, image_size=256, crop_size=224, train_images=128,
                 val_images=64, workers=2, progress=False, plot=False, seed=1)
    straight = train(TrainConfig(out=str(tmp_path / "a"), max_steps=6, **sizes))
    assert straight["config"].amp == "bf16" and straight["config"].channels_last
    train(TrainConfig(out=str(tmp_path / "b"), max_steps=2, **sizes))
    # resumed with the images drawn by two loader workers: pinned memory, non_blocking copies
    train(TrainConfig(out=str(tmp_path / "b"), max_steps=6, preload=False, **sizes),
          resume=tmp_path / "b" / "checkpoint.pt")
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True) for d in ("a", "b"))
    assert_same_weights(a["model"], b["model"])
    result = run_eval(tmp_path / "a" / "checkpoint.pt", ten_crop=True, batch_size=16, progress=False)
    assert result["images"] == 64 and 0 <= result["top5_err"] <= result["top1_err"] <= 1
