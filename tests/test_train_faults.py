"""fastalex train / eval against hostile inputs and failing writes (CPU, tiny sizes): a checkpoint is data,
never code; a non-finite loss stops the run without overwriting a checkpoint; a failed write keeps the
previous checkpoint; a batch of unreadable images adds nothing; SIGKILL at any moment leaves a run that
resumes (slow)."""
import errno
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import fastalex
from fastalex.__main__ import main
from fastalex.train import TrainConfig, loop, train
from fastalex.train import checkpoint as ckpt
from fastalex.train.augment import Augmentation
from fastalex.train.distributed import Distributed
from fastalex.train.evaluate import evaluate_loader
from fastalex.train.metrics import NonFiniteLoss

pytestmark = pytest.mark.skipif("cpu" not in fastalex.backends(), reason="needs the C++ extension's CPU kernels")

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
# what every command below shares: 64 px crops of 72 px synthetic images, 6 steps an epoch
TINY = ["--device", "cpu", "--image-size", "72", "--crop-size", "64", "--train-images", "48", "--val-images", "24",
        "--batch-size", "8", "--workers", "0", "--no-progress", "--no-plot", "--seed", "3"]


def tiny(out, **kw) -> TrainConfig:
    base = dict(out=str(out), device="cpu", epochs=1, batch_size=8, image_size=72, crop_size=64, train_images=48,
                val_images=24, workers=0, progress=False, plot=False, seed=3)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A run of one epoch (6 steps): its out folder, with checkpoint.pt and best.pt."""
    out = tmp_path_factory.mktemp("one_epoch") / "run"
    train(tiny(out))
    return out


def clone(run: Path, to: Path) -> Path:
    """A copy of a run folder made of hard links (cheap; a checkpoint is replaced, never written in place)."""
    to.mkdir(parents=True)
    for f in run.iterdir():
        os.link(f, to / f.name)
    return to


def identity(path: Path) -> tuple:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) if folder.exists() else []


def last_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --- 1. A checkpoint is data, never code.

class _Payload:
    """Unpickling this creates `marker`: a stand-in for a command (nothing else ever runs)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("command", ["eval", "train"])
@pytest.mark.parametrize("kind", ["torch.save", "bare pickle"])
def test_a_checkpoint_with_a_payload_is_refused_and_its_payload_never_runs(tmp_path, capsys, command, kind):
    marker, evil = tmp_path / "payload-ran", tmp_path / "evil.pt"
    state = {"format": ckpt.FORMAT, "model_args": {"variant": "paper", "num_classes": 12}, "classes": ["a"],
             "config": {}, "optimizer": {}, "payload": _Payload(marker)}
    if kind == "torch.save":
        torch.save(state, evil)
    else:
        evil.write_bytes(pickle.dumps(state, protocol=4))
    argv = (["eval", "--checkpoint", str(evil), "--device", "cpu", "--no-progress"] if command == "eval" else
            ["train", "--resume", str(evil), "--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress"])
    assert main(argv) == 2
    assert not marker.exists(), "the checkpoint's pickle ran code"
    line = last_line(capsys.readouterr().err)
    assert f"fastalex {command}: error:" in line and str(evil) in line
    assert "is not a plain-data fastalex checkpoint" in line and "weights_only" not in line
    with pytest.raises(ckpt.CheckpointError, match="not a plain-data fastalex checkpoint"):
        ckpt.load(evil)
    assert not marker.exists()


def test_every_checkpoint_train_writes_loads_as_plain_data(tmp_path, one_epoch):
    for name in ("best.pt", "checkpoint.pt"):  # at an epoch's end
        torch.load(one_epoch / name, map_location="cpu", weights_only=True)  # raises on anything but plain data
    out = clone(one_epoch, tmp_path / "run")
    train(tiny(out, epochs=2, max_steps=2), resume=out / "checkpoint.pt")  # stopped mid-epoch: the partial sums too
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert (state["epoch"], state["batch"]) == (1, 2) and isinstance(state["rng"][0]["cpu"], torch.Tensor)
    assert ckpt.load(out / "checkpoint.pt")["step"] == 8


# --- 2. A batch whose images were all skipped adds nothing, and never a NaN.

def _run(out, **kw):
    config = tiny(out, **kw).resolved(CPU)
    return loop.build_run(config, [str(k) for k in range(12)], Distributed(), CPU, None), config


@pytest.mark.parametrize("ddp", [False, True], ids=["one-process", "ddp-rank"])
def test_an_all_skipped_batch_adds_nothing_and_no_nan(tmp_path, ddp):
    run, config = _run(tmp_path, dropout=0.0)
    # as one rank of two would: under DDP the empty batch goes through the model (no collective at batch 0)
    dist = Distributed(world=2, rank=0) if ddp else Distributed()
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    empty = torch.empty(0, 3, 0, 0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    n = loop.train_step(run, *empty, {"corrupt": 5, "bomb": 3}, Augmentation(config, Distributed(), CPU), CPU, dist)
    assert n == 0
    now = run.meter.local()
    assert (now["loss"], now["count"], now["skipped"]) == (0.0, 0, 8) and run.meter.nonfinite(Distributed()) is None
    for k, v in run.model.state_dict().items():
        assert torch.isfinite(v).all(), k
        if not ddp:
            assert torch.equal(v, before[k]), k  # dropped: no optimizer step at all
    # the validation pass over a loader whose batches are all unreadable
    val = evaluate_loader(run.model, [(*empty, {"empty": 2}), (*empty, {"empty": 1, "not_a_file": 1})], CPU,
                          crop_size=64)
    assert val["images"] == 0 and val["skipped"] == 4 and val["skipped_by_reason"]["empty"] == 3
    assert all(v == v and abs(v) != float("inf") for v in (val["loss"], val["top1_err"], val["top5_err"]))


# --- 3. A loss that becomes NaN or inf stops the run at that step; the last finite checkpoint stays.

def _poison(monkeypatch, epoch: int, step: int):
    """NaN images at (epoch, step) (0-based): the loss of that step is NaN."""
    real = Augmentation.__call__

    def poisoned(self, images, e, s):
        x = real(self, images, e, s)
        return x.fill_(float("nan")) if (e, s) == (epoch, step) else x

    monkeypatch.setattr(Augmentation, "__call__", poisoned)


def test_a_nan_loss_stops_the_run_at_that_step_and_keeps_the_last_checkpoint(tmp_path, one_epoch, monkeypatch,
                                                                             capsys):
    out = clone(one_epoch, tmp_path / "run")
    kept = {name: identity(out / name) for name in ("checkpoint.pt", "best.pt")}
    _poison(monkeypatch, 1, 2)  # the third step of the second epoch: step 9
    code = main(["train", "--resume", str(out / "checkpoint.pt"), "--epochs", "3", "--out", str(out), "--device",
                 "cpu", "--no-progress", "--no-plot"])
    line = last_line(capsys.readouterr().err)
    assert code == NonFiniteLoss.exit_code
    assert re.search(r"the training loss became nan at step 9 \(epoch 2, batch 3\) at lr [0-9.e-]+; ", line), line
    saved_lr = torch.load(out / "checkpoint.pt", weights_only=True)["config"]["lr"]
    assert f"lower --lr (e.g. {saved_lr / 10:.3g})" in line and str(out / "checkpoint.pt") in line
    assert {name: identity(out / name) for name in kept} == kept  # neither file was rewritten
    state = ckpt.load(out / "checkpoint.pt")
    assert state["step"] == 6 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert not temporaries(out)


@pytest.mark.parametrize("max_steps", [4, None], ids=["stopped-mid-epoch", "at-the-epoch-end"])
def test_a_nan_loss_found_at_a_sync_point_is_never_saved(tmp_path, monkeypatch, max_steps):
    # On a GPU the loss is checked every log_every steps (no device sync per step): the NaN of step 3
    # is found at the next check, which every checkpoint write makes first.
    monkeypatch.setattr(loop, "_loss_check_due", lambda run, device, dist: (run.batch + 1) % run.config.log_every == 0)
    _poison(monkeypatch, 0, 2)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at step 3 \(epoch 1, batch 3\) at lr [0-9.e-]+; "
                                            r".*no checkpoint had been written yet"):
        train(tiny(out, max_steps=max_steps, log_every=50))
    assert not (out / "checkpoint.pt").exists() and not (out / "best.pt").exists()


def test_gradscaler_skipped_steps_are_no_stop_but_non_finite_weights_are(tmp_path):
    run, config = _run(tmp_path, dropout=0.0)
    augment = Augmentation(config, Distributed(), CPU)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 72, 72), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 12, (8,), generator=g)
    last = run.model.classifier[6].weight
    overflow = last.register_hook(lambda grad: torch.full_like(grad, float("inf")))

    def step():
        loop.train_step(run, images, labels, {}, augment, CPU, Distributed())
        run.batch, run.step = run.batch + 1, run.step + 1

    # fp16's GradScaler (enabled here on the CPU) skips a step whose gradients overflow: no stop
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, enabled=True)
    before = last.detach().clone()
    step()
    assert torch.equal(last.detach(), before) and run.scaler.get_scale() == 2.0 ** 15
    overflow.remove()
    step()
    assert not torch.equal(last.detach(), before) and torch.isfinite(last).all()
    # without a scaler the same gradients make the weights infinite; the next loss is NaN: stop
    run.scaler = torch.amp.GradScaler("cpu", enabled=False)
    last.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    step()
    with pytest.raises(NonFiniteLoss, match=r"at step 4 \(epoch 1, batch 4\)"):
        step()


# --- 4. A failed write keeps the previous checkpoint.

class _FullDisk:
    """A file object whose writes fail with ENOSPC after `room` bytes."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_a_failed_write_keeps_the_previous_checkpoint_and_no_temporary(tmp_path, monkeypatch, where):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_atomic({"format": ckpt.FORMAT, "version": 1, "w": torch.zeros(10)}, path)
    if where == "write":
        fdopen = os.fdopen
        monkeypatch.setattr(ckpt.os, "fdopen", lambda fd, mode: _FullDisk(fdopen(fd, mode), room=300))
    else:
        monkeypatch.setattr(ckpt.os, {"fsync": "fsync", "rename": "replace"}[where], _enospc)
    # a disk error, as an OSError (torch.save alone reports a failed write as a RuntimeError)
    with pytest.raises(OSError) as failed:
        ckpt.save_atomic({"format": ckpt.FORMAT, "version": 2, "w": torch.ones(100_000)}, path)
    assert failed.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_train_stops_with_one_message_when_a_checkpoint_cannot_be_written(tmp_path, one_epoch, monkeypatch, capsys):
    out = clone(one_epoch, tmp_path / "run")
    kept = identity(out / "checkpoint.pt")
    monkeypatch.setattr(ckpt.os, "replace", _enospc)
    code = main(["train", "--resume", str(out / "checkpoint.pt"), "--epochs", "2", "--out", str(out), "--device",
                 "cpu", "--no-progress", "--no-plot"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = last_line(err)
    assert line.startswith("fastalex train: error: could not write checkpoint " + str(out)), line
    assert line.endswith("No space left on device; the previous checkpoint there is intact"), line
    monkeypatch.undo()
    assert identity(out / "checkpoint.pt") == kept and ckpt.load(out / "checkpoint.pt")["step"] == 6
    assert not temporaries(out)


# --- 5. Killed at any moment, the run resumes.

# `fastalex train` as the command line runs it, printing a line at each event a kill may follow: the
# start, each step, a checkpoint write halfway through (where it stalls, if SLOW_WRITE says which
# write of checkpoint.pt), each finished write.
_KILLABLE = r"""
import os, sys, time, torch
from fastalex.__main__ import main
from fastalex.train import checkpoint as ckpt, loop

stall = int(os.environ.get("SLOW_WRITE", "-1"))
writes = [0]

def say(*what):
    print("EVENT", *what, flush=True)

class Stalling:
    def __init__(self, f):
        self.f, self.n = f, 0
    def write(self, data):
        self.n += self.f.write(data)
        if self.n > (1 << 20):
            self.f.flush()
            say("writing")
            time.sleep(600)
        return len(data)
    def flush(self):
        self.f.flush()

real_save, real_atomic, real_step = torch.save, ckpt.save_atomic, loop.train_step
def save_atomic(state, path):
    if os.path.basename(path) == "checkpoint.pt":
        writes[0] += 1
        if writes[0] - 1 == stall:
            torch.save = lambda obj, f: real_save(obj, Stalling(f))
    real_atomic(state, path)
    torch.save = real_save
    say("saved", os.path.basename(path))
def train_step(run, *args):
    n = real_step(run, *args)
    say("step", run.step + 1)
    return n
ckpt.save_atomic, loop.train_step = save_atomic, train_step
say("start")
sys.exit(main(sys.argv[1:]))
"""


def _launch(script, out: Path, kill=None, delay=0.0, slow_write=-1):
    """Run the command (resuming when out/checkpoint.pt exists); SIGKILL it `delay` s after the event
    at which kill(events so far) is true, or halfway through the write of checkpoint.pt that
    `slow_write` stalls (0: this launch's first). Returns (exit status, events, stderr); -SIGKILL if killed."""
    resume = ["--resume", str(out / "checkpoint.pt")] if (out / "checkpoint.pt").exists() else []
    cmd = [sys.executable, str(script), "train", *TINY, "--train-images", "16", "--val-images", "8", "--epochs", "2",
           "--out", str(out), *resume]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), SLOW_WRITE=str(slow_write))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    events = []
    try:
        for line in proc.stdout:
            if line.startswith("EVENT "):
                events.append(line.split()[1:])
                if events[-1] == ["writing"] or (kill is not None and kill(events)):
                    time.sleep(delay)
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    proc.stderr.close()
    proc.stdout.close()
    return proc.returncode, events, err


def _after_first_save(extra: int):
    """A kill rule: `extra` events after the launch's first finished write of checkpoint.pt."""
    def due(events):
        saved = [i for i, e in enumerate(events) if e == ["saved", "checkpoint.pt"]]
        return bool(saved) and len(events) - 1 - saved[0] >= extra
    return due


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_killed_at_any_moment_the_run_resumes_from_a_loadable_checkpoint(tmp_path, seed):
    # 2 epochs of 2 steps. Each launch resumes from checkpoint.pt, or starts afresh when there is none.
    rng = random.Random(seed)
    script, out = tmp_path / "killable.py", tmp_path / "run"
    script.write_text(_KILLABLE)
    anywhere = rng.randrange(1, 8)
    plans = [
        dict(slow_write=0),  # fresh: halfway through the first write of checkpoint.pt (nothing to resume yet)
        dict(kill=_after_first_save(rng.randrange(3)), delay=rng.uniform(0, 0.2)),  # fresh: just after it
        dict(slow_write=0),  # resumed: halfway through its first write
        dict(kill=lambda events: len(events) >= anywhere, delay=rng.uniform(0, 0.5), slow_write=rng.choice([-1, 1])),
        {},  # to the end
    ]
    code, stale = None, []
    for k, plan in enumerate(plans):
        code, events, err = _launch(script, out, **plan)
        assert "error:" not in err and "Traceback" not in err and code in (0, -signal.SIGKILL), err[-3000:]
        if ["saved", "checkpoint.pt"] in events:  # what killed writes of it left is gone
            assert not set(stale) & set(temporaries(out)), "a killed write's temporary file was left behind"
        stale = [name for name in temporaries(out) if name.startswith(".checkpoint.pt.")]
        if k == 0:  # killed mid-write: its partial file, and no checkpoint yet
            assert events[-1] == ["writing"] and stale and not (out / "checkpoint.pt").exists()
        if code == 0:  # finished (before the chosen event)
            break
        if (out / "checkpoint.pt").exists():
            state = ckpt.load(out / "checkpoint.pt")  # intact: whole epochs only (no signal reached the run)
            assert state["batch"] == 0 and state["step"] == 2 * state["epoch"]
    assert code == 0 and not stale
    state = ckpt.load(out / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == (2, 4) and [row["epoch"] for row in state["history"]] == [1, 2]
    shutil.rmtree(out)
