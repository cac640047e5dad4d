// Python module init of vmamba_kernels._C. The ops themselves are registered with torch.library by
// static initializers in each source (TORCH_LIBRARY_FRAGMENT(vmamba_cuda, m) + TORCH_LIBRARY_IMPL(
// vmamba_cuda, CUDA, m)); importing this module (after `import torch`) makes them appear under
// torch.ops.vmamba_cuda. The same sources built by CMakeLists.txt (VMAMBA_NO_PYTHON) give a plain
// shared library for torch.ops.load_library; build_info is then available as an op only.
// Also here: the knob ops (common/knobs.h), vmamba_cuda::set_knob(name, value) and vmamba_cuda::knobs(), the
// Python module's direct bindings of every op's entry point (ops.h), the Python dispatch's native argument key and
// the triton backend's launch key (common/arg_key.h).
#include <cuda_runtime_api.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <string>

#include "common/common.h"
#include "common/knobs.h"
#include "selective_scan/selective_scan.h"

#ifndef VMAMBA_BUILD_ARCHS
#define VMAMBA_BUILD_ARCHS unknown
#endif
#ifndef VMAMBA_BUILDER
#define VMAMBA_BUILDER unknown
#endif
#define VMAMBA_STR2(x) #x
#define VMAMBA_STR(x) VMAMBA_STR2(x)

namespace {

// "key=value;..." so that both the op and the Python module can return it
std::string build_info_string() {
  std::string s;
  s += "archs=" VMAMBA_STR(VMAMBA_BUILD_ARCHS);
  s += ";builder=" VMAMBA_STR(VMAMBA_BUILDER);
  s += ";cuda_runtime=" + std::to_string(CUDART_VERSION);
  // time steps per scan chunk: the aux tensor is (batch, KD, ceil(L / scan_chunk), N)
  s += ";scan_chunk=" + std::to_string(vmamba::scan::kChunk);
  return s;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vmamba_cuda, m) {
  m.def("build_info() -> str", [] { return build_info_string(); });
  m.def("set_knob(str name, str value) -> ()", [](const std::string& name, const std::string& value) {
    TORCH_CHECK(vmamba::set_knob(name, value), ::vmamba::detail::message("vmamba_cuda::set_knob: unknown knob '", name,
                                                                         "'; knobs: ", vmamba::knob_list()));
  });
  m.def("knobs() -> str", [] { return vmamba::knob_list(); });
}

#ifndef VMAMBA_NO_PYTHON
#include <torch/extension.h>  // pybind11 with torch's type casters (Tensor, optional, dtype)

#include "common/arg_key.h"
#include "common/empty_many.h"
#include "ops.h"

#ifdef VMAMBA_WITH_AUTOGRAD
namespace vmamba::autograd {
// csrc/autograd/autograd.cpp: a Python backend's raw kernels for the C++ autograd nodes; returns its kernel set
int64_t register_py_kernels(pybind11::object scan_fwd, pybind11::object scan_bwd, pybind11::object cross_scan,
                            pybind11::object cross_merge, pybind11::object ln_fwd, pybind11::object ln_bwd,
                            pybind11::object dw_fwd, pybind11::object dw_bwd, bool mixed_branch);
}  // namespace vmamba::autograd
namespace vmamba::fast {
// csrc/autograd/fast_call.cpp: fast_call and its table's functions (plain CPython functions)
PyMethodDef* method_defs();
}  // namespace vmamba::fast
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "vmamba_kernels CUDA extension: ops under torch.ops.vmamba_cuda, and the same entry points bound "
            "directly here (no dispatcher)";
  // Direct bindings of the ops' entry points (csrc/ops.h), the same C++ functions as torch.ops.vmamba_cuda.*:
  // vmamba_kernels/cuda/extension.py calls these. The GIL is released as the dispatcher's calls release it
  // (a launch may wait on a full launch queue).
  // setup.py defines VMAMBA_WITH_<FOLDER> for each op folder it builds.
  using release = pybind11::call_guard<pybind11::gil_scoped_release>;
#ifdef VMAMBA_WITH_SELECTIVE_SCAN
  m.def("selective_scan_fwd", &vmamba::scan::selective_scan_fwd, release());
  m.def("selective_scan_bwd", &vmamba::scan::selective_scan_bwd, release());
#endif
#ifdef VMAMBA_WITH_CROSS_SCAN
  m.def("cross_scan", &vmamba::cross::cross_scan, release());
  m.def("cross_merge", &vmamba::cross::cross_merge, release());
#endif
#ifdef VMAMBA_WITH_LAYER_NORM
  m.def("add_layer_norm_fwd", &vmamba::ln::add_layer_norm_fwd, release());
  m.def("add_layer_norm_infer", &vmamba::ln::add_layer_norm_infer, release());
  m.def("add_layer_norm_bwd", &vmamba::ln::add_layer_norm_bwd, release());
#endif
#ifdef VMAMBA_WITH_DWCONV
  m.def("dwconv2d_fwd", &vmamba::dw::dwconv2d_fwd, release());
  m.def("dwconv2d_bwd", &vmamba::dw::dwconv2d_bwd, release());
#endif
#ifdef VMAMBA_WITH_SS2D_CORE
  m.def("ss2d_core_fwd", &vmamba::ss2d::ss2d_core_fwd, release());
  m.def("ss2d_core_bwd", &vmamba::ss2d::ss2d_core_bwd, release());
#endif
#ifdef VMAMBA_WITH_AUTOGRAD
  {
    // the ops above with autograd recorded in C++ (dispatch's prepared calls with inputs that require grad)
    namespace ag = vmamba::autograd;
    using OptT = vmamba::OptTensor;
    using Tensor = at::Tensor;
    constexpr int64_t cuda = vmamba::autograd::kCudaKernels;
    m.def("selective_scan_fwd_autograd", [](const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                                            const Tensor& C, const OptT& D, const OptT& bias, bool softplus,
                                            at::ScalarType out_dtype) {
      return ag::selective_scan_fwd(u, delta, A, B, C, D, bias, softplus, out_dtype, cuda);
    }, release());
    m.def("cross_scan_autograd", [](const Tensor& x, c10::string_view mode, bool cl) {
      return ag::cross_scan(x, mode, cl, cuda);
    }, release());
    m.def("cross_merge_autograd", [](const Tensor& y, int64_t H, int64_t W, c10::string_view mode, bool cl) {
      return ag::cross_merge(y, H, W, mode, cl, cuda);
    }, release());
    m.def("dwconv2d_fwd_autograd", [](const Tensor& x, const Tensor& w, const OptT& bias, c10::string_view act,
                                      bool cl) { return ag::dwconv2d_fwd(x, w, bias, act, cl, cuda); }, release());
    m.def("add_layer_norm_fwd_autograd", [](const Tensor& x, const OptT& branch, const Tensor& w, const OptT& bias,
                                            const OptT& scale, double eps, bool cl,
                                            std::optional<at::ScalarType> out_dtype) {
      return ag::add_layer_norm_fwd(x, branch, w, bias, scale, eps, cl, out_dtype, cuda);
    }, release());
    m.def("add_layer_norm_node_autograd", &ag::add_layer_norm_node, release());
    // The same C++ nodes around a Python backend's raw kernels (triton, cupy, torch): register_py_kernels(scan_fwd,
    // scan_bwd, cross_scan, cross_merge, ln_fwd, ln_bwd, dw_fwd, dw_bwd, mixed_branch) -> its kernel set, the first
    // argument of the *_pyautograd functions. No GIL release: the node calls Python.
    m.def("register_py_kernels", &ag::register_py_kernels);
    m.def("selective_scan_fwd_pyautograd", [](int64_t ks, const Tensor& u, const Tensor& delta, const Tensor& A,
                                              const Tensor& B, const Tensor& C, const OptT& D, const OptT& bias,
                                              bool softplus, at::ScalarType out_dtype) {
      return ag::selective_scan_fwd(u, delta, A, B, C, D, bias, softplus, out_dtype, ks);
    });
    m.def("cross_scan_pyautograd", [](int64_t ks, const Tensor& x, c10::string_view mode, bool cl) {
      return ag::cross_scan(x, mode, cl, ks);
    });
    m.def("cross_merge_pyautograd", [](int64_t ks, const Tensor& y, int64_t H, int64_t W, c10::string_view mode,
                                       bool cl) { return ag::cross_merge(y, H, W, mode, cl, ks); });
    m.def("dwconv2d_fwd_pyautograd", [](int64_t ks, const Tensor& x, const Tensor& w, const OptT& bias,
                                        c10::string_view act, bool cl) {
      return ag::dwconv2d_fwd(x, w, bias, act, cl, ks);
    });
    m.def("add_layer_norm_fwd_pyautograd", [](int64_t ks, const Tensor& x, const OptT& branch, const Tensor& w,
                                              const OptT& bias, const OptT& scale, double eps, bool cl,
                                              std::optional<at::ScalarType> out_dtype) {
      return ag::add_layer_norm_fwd(x, branch, w, bias, scale, eps, cl, out_dtype, ks);
    });
  }
#endif
#ifdef VMAMBA_WITH_VSS_STAGE
  // not an op: a VMamba v2 stage's blocks in inference, composed of the entry points above (models/cpp_stages.py)
  m.def("vss_stage_infer", &vmamba::stage::vss_stage_infer, release());
#endif
  m.def("build_info", [] {
    pybind11::dict d;
    std::string s = build_info_string();
    size_t start = 0;
    while (start < s.size()) {
      size_t end = s.find(';', start);
      if (end == std::string::npos) end = s.size();
      const std::string kv = s.substr(start, end - start);
      const size_t eq = kv.find('=');
      if (eq != std::string::npos) d[pybind11::str(kv.substr(0, eq))] = pybind11::str(kv.substr(eq + 1));
      start = end + 1;
    }
    return d;
  }, "archs, builder (setup.py or cmake), CUDA runtime version and scan chunk this extension was compiled with");
  // host helpers of the Python dispatch and the Python backends' launches and allocations (not ops): plain CPython
  // functions
  static PyMethodDef host_defs[] = {vmamba::host::kArgKeyDef, vmamba::host::kLaunchKeyDef,
                                    vmamba::host::kEmptyManyDef, {nullptr, nullptr, 0, nullptr}};
  if (PyModule_AddFunctions(m.ptr(), host_defs) != 0) throw pybind11::error_already_set();
#ifdef VMAMBA_WITH_AUTOGRAD
  if (PyModule_AddFunctions(m.ptr(), vmamba::fast::method_defs()) != 0) throw pybind11::error_already_set();
#endif
}
#endif
