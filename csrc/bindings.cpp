// The pybind11 module: tensor checks, then dispatch to the CPU or CUDA launchers. The Python layer
// (fastalex/ops) hands over (N, C, S) views and allocates the outputs; this file never copies.
// Built with -DFASTALEX_WITH_CUDA when the CUDA kernels are compiled in.
#include <torch/extension.h>

#include "cpu/launchers.h"
#ifdef FASTALEX_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/launchers.h"
#endif

namespace fastalex {
namespace {

Strides3 strides3(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

// Every tensor: 3-D, one shape, one dtype, one device.
void check_views(const char* op, std::initializer_list<std::pair<const char*, const at::Tensor*>> ts) {
  const at::Tensor& first = *ts.begin()->second;
  for (const auto& named : ts) {
    const at::Tensor& t = *named.second;
    TORCH_CHECK(t.dim() == 3, op, ": ", named.first, " must be an (N, C, S) view, got ", t.dim(), " dims");
    TORCH_CHECK(t.sizes() == first.sizes(), op, ": ", named.first, " has shape ", t.sizes(), ", expected ",
                first.sizes());
    TORCH_CHECK(t.scalar_type() == first.scalar_type(), op, ": ", named.first, " has dtype ", t.scalar_type(),
                ", expected ", first.scalar_type());
    TORCH_CHECK(t.device() == first.device(), op, ": ", named.first, " is on ", t.device(), ", expected ",
                first.device());
  }
  TORCH_CHECK(at::isFloatingType(first.scalar_type()), op, ": dtype must be floating point, got ",
              first.scalar_type());
}

LRNArgs lrn_args(const at::Tensor& x, int64_t size, double alpha, double beta, double k) {
  TORCH_CHECK(size >= 1 && size <= INT32_MAX, "local_response_norm: size must be in [1, 2^31), got ", size);
  return {x.size(0), x.size(1), x.size(2), static_cast<int>(size), alpha, beta, k};
}

#ifdef FASTALEX_WITH_CUDA
// The CUDA launchers put samples on grid.y.
void check_cuda_batch(const at::Tensor& x, const char* op) {
  TORCH_CHECK(x.size(0) <= 65535, op, ": the cuda backend takes at most 65535 samples per call, got ", x.size(0));
}

DType cuda_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default: TORCH_CHECK(false, "fastalex: the CUDA kernels take float32, float64, float16 or bfloat16, got ", t.scalar_type());
  }
}

void check_cuda(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA launch failed: ", cudaGetErrorString(err));
}
#endif

void lrn_forward(const at::Tensor& x, at::Tensor y, int64_t size, double alpha, double beta, double k) {
  check_views("local_response_norm", {{"input", &x}, {"output", &y}});
  const LRNArgs a = lrn_args(x, size, alpha, beta, k);
  if (x.numel() == 0) return;
  if (x.is_cuda()) {
#ifdef FASTALEX_WITH_CUDA
    check_cuda_batch(x, "local_response_norm");
    const c10::cuda::CUDAGuard guard(x.device());
    check_cuda(cuda::lrn_forward(cuda_dtype(x), x.data_ptr(), strides3(x), y.data_ptr(), strides3(y), a,
                                 c10::cuda::getCurrentCUDAStream(x.get_device()).stream()),
               "local_response_norm");
    return;
#else
    TORCH_CHECK(false, "local_response_norm: this build of the fastalex extension has no CUDA kernels");
#endif
  }
  TORCH_CHECK(x.device().is_cpu(), "local_response_norm: input is on ", x.device(), ", which the extension cannot take");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lrn_forward_cpu", [&] {
    cpu::lrn_forward<scalar_t>(x.const_data_ptr<scalar_t>(), strides3(x), y.mutable_data_ptr<scalar_t>(), strides3(y), a);
  });
}

void lrn_backward(const at::Tensor& x, const at::Tensor& grad_y, at::Tensor grad_x, int64_t size, double alpha,
                  double beta, double k) {
  check_views("local_response_norm_backward", {{"input", &x}, {"grad_output", &grad_y}, {"grad_input", &grad_x}});
  const LRNArgs a = lrn_args(x, size, alpha, beta, k);
  if (x.numel() == 0) return;
  if (x.is_cuda()) {
#ifdef FASTALEX_WITH_CUDA
    check_cuda_batch(x, "local_response_norm_backward");
    const c10::cuda::CUDAGuard guard(x.device());
    check_cuda(cuda::lrn_backward(cuda_dtype(x), x.data_ptr(), strides3(x), grad_y.data_ptr(), strides3(grad_y),
                                  grad_x.data_ptr(), strides3(grad_x), a,
                                  c10::cuda::getCurrentCUDAStream(x.get_device()).stream()),
               "local_response_norm_backward");
    return;
#else
    TORCH_CHECK(false, "local_response_norm_backward: this build of the fastalex extension has no CUDA kernels");
#endif
  }
  TORCH_CHECK(x.device().is_cpu(), "local_response_norm_backward: input is on ", x.device(),
              ", which the extension cannot take");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "lrn_backward_cpu", [&] {
    cpu::lrn_backward<scalar_t>(x.const_data_ptr<scalar_t>(), strides3(x), grad_y.const_data_ptr<scalar_t>(),
                                strides3(grad_y), grad_x.mutable_data_ptr<scalar_t>(), strides3(grad_x), a);
  });
}

}  // namespace
}  // namespace fastalex

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastalex C++/CUDA kernels";
#ifdef FASTALEX_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.def("lrn_forward", &fastalex::lrn_forward, "LRN forward into y; x, y: (N, C, S) views", py::arg("x"),
        py::arg("y"), py::arg("size"), py::arg("alpha"), py::arg("beta"), py::arg("k"));
  m.def("lrn_backward", &fastalex::lrn_backward, "LRN input gradient into grad_x; all (N, C, S) views",
        py::arg("x"), py::arg("grad_y"), py::arg("grad_x"), py::arg("size"), py::arg("alpha"), py::arg("beta"),
        py::arg("k"));
}
