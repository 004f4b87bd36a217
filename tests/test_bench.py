"""`fastalex bench` on the CPU with stand-in timings: errors are one line (exit 2) before anything is
measured; noisy figures are marked, with one note above the table; the plot draws the train_epoch rows
apart and labels every bar; the training's own output is not glued to the progress bar."""
from __future__ import annotations

import pytest

from fastalex import _backends
from fastalex.__main__ import main
from fastalex.bench import pipeline, report, timing
from fastalex.bench.report import Row
from fastalex.bench.timing import Timing


@pytest.fixture
def no_measuring(monkeypatch):
    """Fail if anything gets measured."""
    def measured(*args, **kwargs):
        raise AssertionError("measured before the arguments were checked")

    monkeypatch.setattr(timing, "copy_bandwidth_gbps", measured)
    monkeypatch.setattr(timing, "time_ms", measured)


def test_triton_without_a_gpu_says_what_it_needs(monkeypatch, capsys, no_measuring):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(_backends, "interpreting", lambda: False)  # as outside the tests (no TRITON_INTERPRET)
    assert main(["bench", "--backends", "triton", "--ops", "lrn", "--quick"]) == 2
    out, err = capsys.readouterr()
    assert err == ("fastalex bench: error: backend 'triton' needs a GPU, or TRITON_INTERPRET=1 to run its kernels "
                   "in Triton's (slow) interpreter on the CPU\n"), err
    assert "measuring the CPU backends" not in out and "Traceback" not in err


@pytest.mark.parametrize("args,message", [
    (["--backends", "tpu"], "fastalex bench: error: unknown backend 'tpu'; choose from triton, cuda, cpu"),
    (["--backends", "torch"], "fastalex bench: error: 'torch' is the reference, not a backend to measure; choose "
                              "from triton, cuda, cpu"),
    (["--ops", "lrn,fft"], "fastalex bench: error: unknown op fft; choose from "),
    (["--device", "cuda"], "fastalex bench: error: --device cuda: no CUDA device is visible here"),
])
def test_bad_arguments_are_one_line(monkeypatch, capsys, no_measuring, args, message):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_time_ms_keeps_the_spread_and_the_load(monkeypatch):
    clock = [0.0]
    durations = iter([1.0] * 6 + [1.0, 1.0, 1.0, 1.0, 2.0] + [1.0] * 200)  # ms: warm-up, once, then samples

    def fn():
        clock[0] += next(durations) / 1e3

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(timing, "load_average", lambda: 0.5)
    t = timing.time_ms(fn, timing.torch.device("cpu"), budget_s=0.005)  # 5 samples
    assert isinstance(t, float) and t == pytest.approx(1.0) and t.spread == pytest.approx(2.0)
    assert t.noisy and not t.loaded and t.why_noisy() == "spread 2.0x"
    monkeypatch.setattr(timing, "load_average", lambda: 9.0)
    calm = timing.time_ms(lambda: None, timing.torch.device("cpu"), budget_s=0.0)
    assert calm.spread == 1.0 and calm.loaded and calm.noisy
    assert f"load 9.0 on {timing.cpu_cores()} cores" in calm.why_noisy()


def _rows():
    clean = Row("lrn_fwd", "2x8x8x8", "cpu", Timing(1.0, [1.0, 1.1], load=0.0, cores=2),
                Timing(2.0, [2.0, 2.2], load=0.0, cores=2), 1e6, 10.0)
    spread = Row("lrn_fwd+bwd", "2x8x8x8", "cpu", Timing(1.0, [0.5, 1.0, 2.0], load=0.0, cores=2), 1.5, 1e6, 10.0)
    loaded = Row("max_pool_fwd", "2x8x8x8", "cpu", Timing(1.0, [1.0], load=3.0, cores=2), 0.5, 1e6, 10.0)
    epoch = Row("train_epoch", "64x72->64 none preloaded", "fastalex", Timing(50.0, load=0.0, cores=2), 45.0, 8, 0.0,
                "no data wait", "img/s")
    return clean, spread, loaded, epoch


def test_noisy_rows_are_marked_and_noted_once():
    clean, spread, loaded, epoch = _rows()
    assert not clean.noisy and spread.noisy and loaded.noisy and not epoch.noisy
    assert spread.as_dict()["noisy"] and spread.as_dict()["noise"] == "spread 4.0x"
    lines = report.format_table([clean, spread, loaded, epoch], "CPU", 10.0).splitlines()
    notes = [line for line in lines if "noisy row(s)" in line]
    assert len(notes) == 1 and "2 noisy row(s)" in notes[0] and notes[0] == lines[1]
    by_op = {line.split()[1] if line.startswith("~") else line.split()[0]: line for line in lines[3:]}
    assert by_op["lrn_fwd+bwd"].startswith("~") and by_op["lrn_fwd+bwd"].endswith("spread 4.0x")
    assert by_op["max_pool_fwd"].startswith("~") and by_op["max_pool_fwd"].endswith("load 3.0 on 2 cores")
    assert not by_op["lrn_fwd"].startswith("~") and not by_op["train_epoch"].startswith("~")
    assert not any("noisy" in line for line in report.format_table([clean], "CPU", 10.0).splitlines())


def test_plot_draws_train_epoch_apart_and_labels_every_bar(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    rows = list(_rows())
    report.plot(rows, str(tmp_path / "bench.png"), "test")
    assert (tmp_path / "bench.png").stat().st_size > 0
    speed, fraction = figures[0].axes
    assert [t.get_text() for t in speed.get_yticklabels()] == [
        "lrn_fwd 2x8x8x8 [cpu vs torch]", "~ lrn_fwd+bwd 2x8x8x8 [cpu vs torch]", "~ max_pool_fwd 2x8x8x8 [cpu vs torch]"]
    assert [t.get_text() for t in speed.texts] == ["2.00x", "1.50x (noisy)", "0.50x (noisy)"]
    assert [t.get_text() for t in fraction.get_yticklabels()] == [
        "train_epoch 64x72->64 none preloaded [fastalex vs no data wait]"]
    assert [t.get_text() for t in fraction.texts] == ["90.0% not waiting"]
    assert "not a speed-up" in fraction.get_xlabel() and fraction.get_xscale() == "linear"
    assert [p.get_facecolor()[:3] for p in fraction.patches] != [(1.0, 0.0, 0.0)]  # not drawn as a red "slow-down"


def test_training_output_is_not_glued_to_the_progress_bar(monkeypatch, capsys):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(timing, "copy_bandwidth_gbps", lambda device: 10.0)
    message = "epoch 1: train loss 2.4 | the inner training's own line"

    def measure_train_epoch(device, quick=False, preload=True):
        import sys

        print(message, file=sys.stderr)
        return _rows()[3], {"img_per_s": 100.0, "data_wait_frac": 0.1}

    monkeypatch.setattr(pipeline, "measure_train_epoch", measure_train_epoch)
    assert main(["bench", "--ops", "train", "--quick"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.split("\n") if message in line]
    assert len(lines) == 2, err
    for line in lines:  # what is left on the terminal line after the bar's last carriage return
        assert line.rsplit("\r", 1)[-1] == message, repr(line)
