"""fastalex: fused Triton and C++/CUDA kernels for AlexNet's operators, as drop-in torch modules.

    import fastalex
    y = fastalex.functional.local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=2.0)
    lrn = fastalex.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    p = fastalex.functional.max_pool2d(y, kernel_size=3, stride=2)
    z = fastalex.functional.relu_lrn_max_pool2d(x, 5, alpha=5e-4, beta=0.75, k=2.0)  # one pass each way
    fastalex.backends()            # what works here: "triton", "cuda", "cpu", "torch"
    with fastalex.backend("cpu"):  # or fastalex.set_backend(...), or FASTALEX_BACKEND
        ...
"""
from fastalex import functional, nn, ops
from fastalex._backends import BackendError, backend, backends, set_backend
from fastalex.models import AlexNet, alexnet, convert, reference_alexnet

__version__ = "0.1.0"

__all__ = ["AlexNet", "BackendError", "alexnet", "backend", "backends", "convert", "functional", "nn", "ops",
           "reference_alexnet", "set_backend", "__version__"]
