"""The conv tuner's torch route (fastalex/kernels/conv2d_torch.py): on the triton backend each direction's
candidates include torch's own convolution, timed like the Triton configs. With a stand-in timer: the
tuner picks torch's route when it is the fastest and a Triton config when that is; either way the
output and every gradient match torch (and each other) within tests/numerics.py's tolerances, for the
asymmetric paddings (the paper's conv1; a bottom padding below the top one), groups, no bias, NCHW and
channels_last."""
from __future__ import annotations

import pytest
import torch
import triton.testing

import fastalex
from fastalex import functional as fa
from fastalex.kernels import _common, _tuning_cache, conv2d_torch
from backends_here import KERNEL_BACKENDS, fresh_tuner
from numerics import assert_close
from test_conv2d import CASES, IDS, _make, _reference

pytestmark = pytest.mark.skipif("triton" not in KERNEL_BACKENDS, reason="needs the triton backend (interpreter)")

ROUTES = ("forward", "grad_input", "grad_weight")


@pytest.fixture
def tuner(monkeypatch, tmp_path):
    """A tuner that times for real, in a fresh process with an empty cache, whose timer says torch's
    route takes `torch_ms` and every Triton config 1 ms; returns the settings and the log of what ran."""
    state = {"torch_ms": 0.5, "ran": []}

    def traced(name):
        real = getattr(conv2d_torch, name)

        def run(*args, **kwargs):
            state["ran"].append(name)
            return real(*args, **kwargs)
        return run

    for name in ROUTES:
        monkeypatch.setattr(conv2d_torch, name, traced(name))

    def do_bench(fn, **kwargs):
        before = len(state["ran"])
        fn()
        return state["torch_ms"] if len(state["ran"]) > before else 1.0

    monkeypatch.setattr(triton.testing, "do_bench", do_bench)
    fresh_tuner(monkeypatch, tmp_path)
    return state


def _run(case, channels_last, relu, dtype=torch.float32):
    x, w, b, kw = _make(case, dtype, channels_last)
    grad = torch.randn(_reference(x, w, b, relu, **kw).shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    out = {}
    for name, backend in (("ours", "triton"), ("torch", None)):
        xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
        bs = b.clone().requires_grad_() if b is not None else None
        if backend:
            with fastalex.backend(backend):
                y = (fa.conv2d_relu if relu else fa.conv2d)(xs, ws, bs, **kw)
        else:
            y = _reference(xs, ws, bs, relu, **kw)
        y.backward(grad)
        out[name] = (y.detach(), xs.grad, ws.grad, bs.grad if bs is not None else None)
    return out


def _chosen():
    return {key[0]: cfg for key, cfg in _common.tuned_configs().items() if key[0].startswith("conv2d_")}


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch_route_when_fastest_matches_torch(tuner, case, channels_last):
    relu = case[0] != "3x3p1-nobias"
    out = _run(case, channels_last, relu)
    chosen = _chosen()
    assert set(chosen) == {"conv2d_fwd", "conv2d_dgrad", "conv2d_wgrad"}, chosen
    assert all(cfg == conv2d_torch.TORCH for cfg in chosen.values()), chosen
    for what, ours, ref in zip(("output", "grad_input", "grad_weight", "grad_bias"), out["ours"], out["torch"]):
        if ref is not None:
            assert ours.shape == ref.shape and ours.dtype == ref.dtype, what
            assert_close(ours, ref, what=f"{case[0]} {what}")
    assert out["ours"][0].stride() == out["torch"][0].stride(), "the output keeps the input's layout"
    assert out["ours"][1].stride() == out["torch"][1].stride(), "grad_input keeps the input's layout"


def test_triton_config_when_torch_is_slower_and_the_same_results(tuner, monkeypatch, tmp_path):
    case = CASES[0]  # the paper's conv1: asymmetric padding
    via_torch = _run(case, True, True)
    _common._TUNED.clear()  # another process, on a machine whose timings differ: its own cache
    _tuning_cache._cache = None
    monkeypatch.setenv("FASTALEX_TUNING_CACHE", str(tmp_path / "other"))
    tuner["torch_ms"] = 5.0
    tuner["ran"].clear()
    via_triton = _run(case, True, True)
    chosen = _chosen()
    assert chosen and all(isinstance(cfg, _common_config()) for cfg in chosen.values()), chosen
    for what, a, b in zip(("output", "grad_input", "grad_weight", "grad_bias"), via_triton["ours"], via_torch["ours"]):
        assert_close(a, b, what=f"triton route against torch route: {what}")


def _common_config():
    from fastalex.kernels.conv2d import Config

    return Config


def test_the_choice_is_cached_as_plain_fields(tuner, tmp_path):
    _run(CASES[2], True, True)
    cache = _tuning_cache.cache()
    assert {"route": "torch"} in list(cache.entries.values()), cache.entries


def test_bench_lists_the_choices(tuner):
    from fastalex.bench import conv as conv_bench

    _run(CASES[1], True, True)
    choices = conv_bench.tuned_choices()
    assert sorted(c["direction"] for c in choices) == ["dgrad", "fwd", "wgrad"], choices
    assert all(c["choice"] == "torch" and c["weight"] == [8, 3, 5, 5] for c in choices), choices
