"""The command line's dispatch (fastalex/__main__.py) and `fastalex info --require`."""
from __future__ import annotations

import pytest

import fastalex
from fastalex import _backends
from fastalex.__main__ import COMMANDS, main


def test_every_command_has_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in COMMANDS)


def test_info_require_names_what_is_missing(capsys, monkeypatch):
    monkeypatch.setattr(_backends, "unavailable_reason",
                        lambda name: "no CUDA device here" if name == "cuda" else None)
    assert main(["info", "--require", "cpu,torch"]) == 0
    assert main(["info", "--require", "cpu,cuda"]) == 1
    assert "required backend(s) unavailable: cuda (no CUDA device here)" in capsys.readouterr().err


def test_info_require_rejects_unknown_backends(capsys):
    with pytest.raises(SystemExit) as e:
        main(["info", "--require", "cpu,tpu"])
    assert e.value.code == 2
    assert "unknown backend tpu" in capsys.readouterr().err


def test_public_names_resolve():
    for name in fastalex.__all__:
        assert getattr(fastalex, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fastalex.nope  # noqa: B018


def test_info_tuned_lists_the_tuning_cache(capsys, monkeypatch, tmp_path):
    import dataclasses

    from fastalex.kernels import _tuning_cache

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        block: int

    monkeypatch.setenv("FASTALEX_TUNING_CACHE", str(tmp_path))
    monkeypatch.setattr(_tuning_cache, "_cache", None)
    _tuning_cache.cache().put(("lrn_forward", (128, 96, 3025)), Cfg(256))
    monkeypatch.setattr(_tuning_cache, "_cache", None)  # as a new process reads it
    main(["info", "--tuned"])
    out = capsys.readouterr().out
    assert f"tuning cache: {tmp_path}" in out and "('lrn_forward', (128, 96, 3025)): {'block': 256}" in out
