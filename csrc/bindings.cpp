// The pybind11 module: tensor checks, then dispatch to the CPU or CUDA launchers. The Python layer
// (fastalex/ops) hands over (N, C, S) views (LRN) or (N, C, H, W) tensors (max-pool) and allocates the
// outputs; this file never copies.
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

// --- max_pool2d ---

Strides4 strides4(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

using NamedTensors = std::initializer_list<std::pair<const char*, const at::Tensor*>>;

// Input-shaped tensors share one shape, output-shaped ones another with the same N and C; all floats
// share a dtype; winners is uint8 (windows up to 256 taps) or int32; everything on one device.
void check_pool(const char* op, NamedTensors inputs, NamedTensors outputs, const at::Tensor& winners) {
  const at::Tensor& in = *inputs.begin()->second;
  const at::Tensor& out = *outputs.begin()->second;
  auto check_group = [&](NamedTensors ts, const at::Tensor& first, bool floats) {
    for (const auto& named : ts) {
      const at::Tensor& t = *named.second;
      TORCH_CHECK(t.dim() == 4, op, ": ", named.first, " must be (N, C, H, W), got ", t.dim(), " dims");
      TORCH_CHECK(t.sizes() == first.sizes(), op, ": ", named.first, " has shape ", t.sizes(), ", expected ",
                  first.sizes());
      if (floats)
        TORCH_CHECK(t.scalar_type() == in.scalar_type(), op, ": ", named.first, " has dtype ", t.scalar_type(),
                    ", expected ", in.scalar_type());
      TORCH_CHECK(t.device() == in.device(), op, ": ", named.first, " is on ", t.device(), ", expected ",
                  in.device());
    }
  };
  check_group(inputs, in, true);
  check_group(outputs, out, true);
  TORCH_CHECK(out.size(0) == in.size(0) && out.size(1) == in.size(1), op, ": ", outputs.begin()->first,
              " has shape ", out.sizes(), ", whose N and C differ from ", inputs.begin()->first, "'s ", in.sizes());
  check_group({{"winners", &winners}}, out, false);
  const auto st = in.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op,
              ": dtype must be float32, float64, float16 or bfloat16, got ", st);
  TORCH_CHECK(winners.scalar_type() == at::kByte || winners.scalar_type() == at::kInt, op,
              ": winners must be uint8 or int32, got ", winners.scalar_type());
}

Pool2dArgs pool_args(const char* op, const at::Tensor& in, const at::Tensor& out, const at::Tensor& winners, int64_t kh,
                     int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  auto check_range = [&](const char* name, int64_t v, int64_t lo) {
    TORCH_CHECK(v >= lo && v <= INT32_MAX, op, ": ", name, " must be in [", lo, ", 2^31), got ", v);
  };
  check_range("kernel_size[0]", kh, 1);
  check_range("kernel_size[1]", kw, 1);
  check_range("stride[0]", sh, 1);
  check_range("stride[1]", sw, 1);
  check_range("padding[0]", ph, 0);
  check_range("padding[1]", pw, 0);
  check_range("dilation[0]", dh, 1);
  check_range("dilation[1]", dw, 1);
  // Tap indices and window extents are int.
  TORCH_CHECK(kh * kw <= INT32_MAX, op, ": a ", kh, "x", kw, " window has too many taps");
  TORCH_CHECK((kh - 1) * dh < INT32_MAX && (kw - 1) * dw < INT32_MAX, op, ": the dilated window is too large");
  TORCH_CHECK(winners.scalar_type() != at::kByte || kh * kw <= 256, op, ": a ", kh, "x", kw,
              " window has more than 256 taps, so winners must be int32, got uint8");
  return {in.size(0), in.size(1), in.size(2), in.size(3), out.size(2), out.size(3), int(kh), int(kw), int(sh),
          int(sw), int(ph), int(pw), int(dh), int(dw)};
}

#ifdef FASTALEX_WITH_CUDA
WinnerType winner_type(const at::Tensor& w) {
  return w.scalar_type() == at::kByte ? WinnerType::UInt8 : WinnerType::Int32;
}
#endif

void max_pool2d_forward(const at::Tensor& x, at::Tensor y, at::Tensor winners, int64_t kh, int64_t kw, int64_t sh,
                        int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  const char* op = "max_pool2d";
  check_pool(op, {{"input", &x}}, {{"output", &y}}, winners);
  const Pool2dArgs a = pool_args(op, x, y, winners, kh, kw, sh, sw, ph, pw, dh, dw);
  if (y.numel() == 0) return;
  if (x.is_cuda()) {
#ifdef FASTALEX_WITH_CUDA
    const c10::cuda::CUDAGuard guard(x.device());
    check_cuda(cuda::max_pool2d_forward(cuda_dtype(x), winner_type(winners), x.data_ptr(), strides4(x), y.data_ptr(),
                                        strides4(y), winners.data_ptr(), strides4(winners), a,
                                        c10::cuda::getCurrentCUDAStream(x.get_device()).stream()),
               op);
    return;
#else
    TORCH_CHECK(false, op, ": this build of the fastalex extension has no CUDA kernels");
#endif
  }
  TORCH_CHECK(x.device().is_cpu(), op, ": input is on ", x.device(), ", which the extension cannot take");
  const bool byte = winners.scalar_type() == at::kByte;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "max_pool2d_forward_cpu", [&] {
    if (byte)
      cpu::max_pool2d_forward<scalar_t, uint8_t>(x.const_data_ptr<scalar_t>(), strides4(x),
                                                 y.mutable_data_ptr<scalar_t>(), strides4(y),
                                                 winners.mutable_data_ptr<uint8_t>(), strides4(winners), a);
    else
      cpu::max_pool2d_forward<scalar_t, int32_t>(x.const_data_ptr<scalar_t>(), strides4(x),
                                                 y.mutable_data_ptr<scalar_t>(), strides4(y),
                                                 winners.mutable_data_ptr<int32_t>(), strides4(winners), a);
  });
}

void max_pool2d_backward(const at::Tensor& grad_y, const at::Tensor& winners, at::Tensor grad_x, int64_t kh,
                         int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  const char* op = "max_pool2d_backward";
  check_pool(op, {{"grad_input", &grad_x}}, {{"grad_output", &grad_y}}, winners);
  const Pool2dArgs a = pool_args(op, grad_x, grad_y, winners, kh, kw, sh, sw, ph, pw, dh, dw);
  if (grad_x.numel() == 0) return;
  if (grad_x.is_cuda()) {
#ifdef FASTALEX_WITH_CUDA
    const c10::cuda::CUDAGuard guard(grad_x.device());
    check_cuda(cuda::max_pool2d_backward(cuda_dtype(grad_x), winner_type(winners), grad_y.data_ptr(), strides4(grad_y),
                                         winners.data_ptr(), strides4(winners), grad_x.data_ptr(), strides4(grad_x), a,
                                         c10::cuda::getCurrentCUDAStream(grad_x.get_device()).stream()),
               op);
    return;
#else
    TORCH_CHECK(false, op, ": this build of the fastalex extension has no CUDA kernels");
#endif
  }
  TORCH_CHECK(grad_x.device().is_cpu(), op, ": grad_input is on ", grad_x.device(),
              ", which the extension cannot take");
  const bool byte = winners.scalar_type() == at::kByte;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_x.scalar_type(), "max_pool2d_backward_cpu", [&] {
    if (byte)
      cpu::max_pool2d_backward<scalar_t, uint8_t>(grad_y.const_data_ptr<scalar_t>(), strides4(grad_y),
                                                  winners.const_data_ptr<uint8_t>(), strides4(winners),
                                                  grad_x.mutable_data_ptr<scalar_t>(), strides4(grad_x), a);
    else
      cpu::max_pool2d_backward<scalar_t, int32_t>(grad_y.const_data_ptr<scalar_t>(), strides4(grad_y),
                                                  winners.const_data_ptr<int32_t>(), strides4(winners),
                                                  grad_x.mutable_data_ptr<scalar_t>(), strides4(grad_x), a);
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
  m.def("max_pool2d_forward", &fastalex::max_pool2d_forward,
        "max-pool forward into y and winners (the tap index jh*kw + jw of each output's maximum); x: (N, C, H, W), "
        "y, winners: (N, C, Ho, Wo)",
        py::arg("x"), py::arg("y"), py::arg("winners"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
        py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"));
  m.def("max_pool2d_backward", &fastalex::max_pool2d_backward,
        "max-pool input gradient into grad_x (every element); grad_y, winners: (N, C, Ho, Wo), grad_x: (N, C, H, W)",
        py::arg("grad_y"), py::arg("winners"), py::arg("grad_x"), py::arg("kh"), py::arg("kw"), py::arg("sh"),
        py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"));
}
