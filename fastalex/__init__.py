"""fastalex: fused Triton and C++/CUDA kernels for AlexNet's operators, as drop-in torch modules.

    import fastalex
    y = fastalex.functional.local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=2.0)
    lrn = fastalex.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    p = fastalex.functional.max_pool2d(y, kernel_size=3, stride=2)
    z = fastalex.functional.relu_lrn_max_pool2d(x, 5, alpha=5e-4, beta=0.75, k=2.0)  # one pass each way
    fastalex.backends()            # what works here: "triton", "cuda", "cpu", "torch"
    with fastalex.backend("cpu"):  # or fastalex.set_backend(...), or FASTALEX_BACKEND
        ...

The package has two halves. The kernel library: kernels -> ops -> functional -> nn -> models, each
layer importing only the ones below it. The training application above it: transforms, data, train,
bench and the command line (`python -m fastalex`), which use the library and never the other way.
The public names below are imported on first use, so `import fastalex.transforms` (or the command
line's help) does not load the kernels or register the custom ops.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute in it; None: the module itself)
_PUBLIC = {
    "AlexNet": ("fastalex.models", "AlexNet"),
    "alexnet": ("fastalex.models", "alexnet"),
    "reference_alexnet": ("fastalex.models", "reference_alexnet"),
    "convert": ("fastalex.models", "convert"),
    "BackendError": ("fastalex._backends", "BackendError"),
    "backend": ("fastalex._backends", "backend"),
    "backends": ("fastalex._backends", "backends"),
    "set_backend": ("fastalex._backends", "set_backend"),
    "functional": ("fastalex.functional", None),
    "nn": ("fastalex.nn", None),
    "ops": ("fastalex.ops", None),
    "transforms": ("fastalex.transforms", None),
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'fastalex' has no attribute {name!r}")
    module, attr = _PUBLIC[name]
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value  # later lookups are plain attribute reads (torch.compile traces them as such)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
