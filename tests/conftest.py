import os
import tempfile

# The Triton kernels run on CPU tensors through the interpreter unless told otherwise
# (benchmarks/gpu_check.sh sets TRITON_INTERPRET=0 to run them on the GPU). Must precede triton's import.
os.environ.setdefault("TRITON_INTERPRET", "1")
# The tuner's choices on disk (fastalex/kernels/_tuning_cache.py) go to a folder of this session's own,
# so that no test reads a choice an earlier run (or a benchmark) left behind.
os.environ.setdefault("FASTALEX_TUNING_CACHE", tempfile.mkdtemp(prefix="fastalex-tuning-"))

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one; benchmarks/gpu_check.sh runs them)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _reset_backend():
    import fastalex

    previous = fastalex.set_backend(None)
    yield
    fastalex.set_backend(previous)
