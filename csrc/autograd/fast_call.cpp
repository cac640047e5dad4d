// The public call in one C++ call (issue #20, item 1): fast_call(op, impl, *args) runs a call of vmamba_kernels'
// public function `op` whose arguments have the metadata of a call dispatch.prepare checked before, straight into the
// op's C++ entry (csrc/autograd/autograd.cpp: the node where an input requires grad, the kernels alone where none
// does), or returns NotImplemented and the Python path (dispatch.prepare, then the prepared call) runs it.
//
// Why: the Python dispatch of a prepared call (key, lookup, argument record, prepared call) cost 2.6 us of host time
// on the CI VM before the pybind11 conversion of the arguments, and GPU call 78's host ran a public call about 7 us
// above the raw entry (reports/logs/2026-12-08_fast_call.md).
//
// What it reproduces of dispatch.prepare's prepared path: the same key (op, impl name, number of registered backends,
// grad mode, deterministic flag, dispatch.arg_key of the arguments); plain eager execution only (no dispatch or
// torch function mode, no functorch transform, no jit trace: otherwise NotImplemented); the thread's last choice
// (dispatch.last_choice) recorded in the same dict. The caller checks torch.compile is not tracing (dynamo would
// have to trace through this function).
// What dispatch fills it with (fast_call_put, from dispatch.prepare after a checked call): every prepared call; run
// natively where it runs the extension's nodes or entry points (kinds "grad_native" / "body_native" of the cuda
// backend, "grad_native" of a Python backend's registered kernels) on contiguous inputs, else as the Python path
// does after its lookup (the op's normaliser, then the prepared call's run). fast_call_clear empties it
// (dispatch.clear_choice_cache).
#ifndef VMAMBA_NO_PYTHON
#include <ATen/Context.h>
#include <ATen/PythonTorchFunctionTLS.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/jit/frontend/tracer.h>

#include <string>
#include <unordered_map>

#include "../common/arg_key.h"
#include "../ops.h"

namespace vmamba {
namespace fast {
namespace {

// op ids: the order of dispatch.FAST_OPS
enum Op : int { kScan = 0, kCrossScan, kCrossMerge, kAddNorm, kDwconv, kSs2dCore, kNumOps };
constexpr Py_ssize_t kArgs[kNumOps] = {9, 3, 5, 8, 5, 10};  // positional arguments of each op's check
constexpr size_t kMaxEntries = 4096;                          // as dispatch._CHOICES_MAX

// A prepared call: natively (the op's C++ entry with kernel set ks) or through Python (prepared(fast(*args)), the
// Python path minus dispatch.prepare's key and lookup: a backend's Python kernels, Python formulas, an int flag)
struct Entry {
  bool native;
  int64_t ks;          // kernel set of the autograd functions (ops.h), where native
  PyObject* name;      // the backend's name (str): the thread's last choice
  PyObject* fast;      // else: the op's argument normaliser (OpSpec.fast) ...
  PyObject* prepared;  // ... and what runs the record: the prepared call's run on its eager ops (dispatch._fast_put)
};
void release(Entry& e) {
  Py_XDECREF(e.name);
  Py_XDECREF(e.fast);
  Py_XDECREF(e.prepared);
}
int64_t g_stats[3] = {0, 0, 0};  // native hits, Python hits, misses (fast_call_stats; with the GIL held)

// touched with the GIL held only
std::unordered_map<std::string, Entry>& table() {
  static auto* t = new std::unordered_map<std::string, Entry>();  // never destroyed (interpreter teardown)
  return *t;
}
PyObject* g_registry = nullptr;       // dispatch._REGISTRY (its size is part of the key)
PyObject* g_choices_of = nullptr;     // dispatch._thread_choices(): the calling thread's last-choice dict
thread_local PyObject* t_choices = nullptr;  // that dict, fetched once per thread (a strong reference, kept)

bool plain_eager() {
  return c10::impl::TorchDispatchModeTLS::stack_len() == 0 && at::impl::PythonTorchFunctionTLS::stack_len() == 0 &&
         // functorch includes its front-mode key while its interpreter stack is not empty (ATen/functorch's
         // DynamicLayer.h, whose header this build cannot include, reads that stack)
         !c10::impl::tls_is_dispatch_key_included(c10::DispatchKey::FuncTorchDynamicLayerFrontMode) &&
         !torch::jit::tracer::isTracing();
}

// the key of (op, name, args) in the current context; false where an argument is not encodable (arg_key's None)
bool make_key(host::KeyBuffer& k, int op, PyObject* name, PyObject* const* args, Py_ssize_t n) {
  if (g_registry == nullptr) return false;
  Py_ssize_t len = 0;
  const char* s = nullptr;
  if (name != Py_None) {
    if (!PyUnicode_CheckExact(name) || (s = PyUnicode_AsUTF8AndSize(name, &len)) == nullptr) {
      PyErr_Clear();
      return false;
    }
  }
  if (!(k.put_value(int8_t(op)) && k.put_value(int64_t(name == Py_None ? -1 : len)) && k.put(s, size_t(len)) &&
        k.put_value(int64_t(PyDict_Size(g_registry))) && k.put_value(uint8_t(c10::GradMode::is_enabled())) &&
        k.put_value(uint8_t(at::globalContext().deterministicAlgorithms()))))
    return false;
  for (Py_ssize_t i = 0; i < n; ++i)
    if (!host::put_arg(k, args[i])) return false;
  return true;
}

const at::Tensor& T(PyObject* o) { return THPVariable_Unpack(o); }
OptTensor opt(PyObject* o) { return o == Py_None ? OptTensor() : OptTensor(THPVariable_Unpack(o)); }
std::string str(PyObject* o) {
  Py_ssize_t n = 0;
  const char* s = PyUnicode_AsUTF8AndSize(o, &n);
  if (s == nullptr) throw python_error();
  return std::string(s, size_t(n));
}
int64_t int_of(PyObject* o) {
  const long long v = PyLong_AsLongLong(o);
  if (v == -1 && PyErr_Occurred()) throw python_error();
  return v;
}
double float_of(PyObject* o) {
  const double v = PyFloat_AsDouble(o);
  if (v == -1.0 && PyErr_Occurred()) throw python_error();
  return v;
}
// the key holds a bool argument's type and value (dispatch puts only calls whose flags are bools)
bool flag(PyObject* o) { return o == Py_True; }
c10::optional<at::ScalarType> dtype_of(PyObject* o) {
  if (o == Py_None) return c10::nullopt;
  return reinterpret_cast<THPDtype*>(o)->scalar_type;
}

// the GIL released around the cuda kernels (as the direct bindings release it); a Python backend's kernels take it
// back at once, so it is kept
struct MaybeRelease {
  explicit MaybeRelease(int64_t ks) {
    if (ks == ::vmamba::autograd::kCudaKernels) state_ = PyEval_SaveThread();
  }
  ~MaybeRelease() {
    if (state_ != nullptr) PyEval_RestoreThread(state_);
  }
  PyThreadState* state_ = nullptr;
};

PyObject* pair(at::Tensor a, at::Tensor b) {
  PyObject* pa = THPVariable_Wrap(std::move(a));
  PyObject* pb = pa == nullptr ? nullptr : THPVariable_Wrap(std::move(b));
  PyObject* t = pb == nullptr ? nullptr : PyTuple_Pack(2, pa, pb);
  Py_XDECREF(pa);
  Py_XDECREF(pb);
  return t;
}

// the prepared path of `op` on arguments `a` (those of the key): what dispatch's OpSpec.run_dense returns
PyObject* run(int op, int64_t ks, PyObject* const* a) {
  namespace ag = ::vmamba::autograd;
  switch (op) {
    case kScan: {  // (u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype) -> (y, last_state)
      const at::Tensor &u = T(a[0]), &delta = T(a[1]), &A = T(a[2]), &B = T(a[3]), &C = T(a[4]);
      const OptTensor D = opt(a[5]), bias = opt(a[6]);
      const at::ScalarType od = dtype_of(a[8]).value_or(u.scalar_type());
      at::Tensor y, last;
      {
        MaybeRelease gil(ks);
        std::tie(y, last, std::ignore) = ag::selective_scan_fwd(u, delta, A, B, C, D, bias, flag(a[7]), od, ks);
      }
      return pair(std::move(y), std::move(last));
    }
    case kCrossScan: {  // (x, mode, channels_last) -> out
      const std::string mode = str(a[1]);
      at::Tensor out;
      {
        MaybeRelease gil(ks);
        out = ag::cross_scan(T(a[0]), mode, flag(a[2]), ks);
      }
      return THPVariable_Wrap(std::move(out));
    }
    case kCrossMerge: {  // (y, H, W, mode, channels_last) -> out
      const int64_t H = int_of(a[1]), W = int_of(a[2]);
      const std::string mode = str(a[3]);
      at::Tensor out;
      {
        MaybeRelease gil(ks);
        out = ag::cross_merge(T(a[0]), H, W, mode, flag(a[4]), ks);
      }
      return THPVariable_Wrap(std::move(out));
    }
    case kAddNorm: {  // (x, branch, weight, bias, eps, branch_scale, channels_last, out_dtype) -> (y, s or x)
      const at::Tensor& x = T(a[0]);
      const OptTensor branch = opt(a[1]), bias = opt(a[3]), scale = opt(a[5]);
      const double eps = float_of(a[4]);
      at::Tensor y, s;
      {
        MaybeRelease gil(ks);
        std::tie(y, s, std::ignore, std::ignore) =
            ag::add_layer_norm_fwd(x, branch, T(a[2]), bias, scale, eps, flag(a[6]), dtype_of(a[7]), ks);
      }
      if (!branch.has_value()) {  // the public op hands back x itself (its Python object)
        PyObject* py_y = THPVariable_Wrap(std::move(y));
        PyObject* t = py_y == nullptr ? nullptr : PyTuple_Pack(2, py_y, a[0]);
        Py_XDECREF(py_y);
        return t;
      }
      return pair(std::move(y), std::move(s));
    }
    case kDwconv: {  // (x, weight, bias, act, channels_last) -> out
      const std::string act = str(a[3]);
      at::Tensor out;
      {
        MaybeRelease gil(ks);
        out = ag::dwconv2d_fwd(T(a[0]), T(a[1]), opt(a[2]), act, flag(a[4]), ks);
      }
      return THPVariable_Wrap(std::move(out));
    }
    default:
      break;
  }
  PyErr_SetString(PyExc_ValueError, "vmamba_kernels._C.fast_call: unknown op id");
  return nullptr;
}

// the op id and argument count of a fast_call / fast_call_put; false (with a Python error) when wrong
bool op_of(PyObject* o, Py_ssize_t nargs, int* op) {
  const long v = PyLong_AsLong(o);
  if (v == -1 && PyErr_Occurred()) return false;
  if (v < 0 || v >= kNumOps || nargs != kArgs[v]) {
    PyErr_Format(PyExc_ValueError, "vmamba_kernels._C.fast_call: op id %ld with %zd arguments", v, nargs);
    return false;
  }
  *op = int(v);
  return true;
}

// fast_call(op, impl, *args) -> the op's result, or NotImplemented (not prepared here, or not plain eager)
PyObject* fast_call(PyObject* /*module*/, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  int op = 0;
  if (nargs < 2 || !op_of(args[0], nargs - 2, &op)) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "fast_call(op, impl, *args)");
    return nullptr;
  }
  if (!plain_eager()) Py_RETURN_NOTIMPLEMENTED;
  host::KeyBuffer k;
  if (!make_key(k, op, args[1], args + 2, nargs - 2)) Py_RETURN_NOTIMPLEMENTED;
  auto& t = table();
  const auto it = t.find(k.str());
  if (it == t.end()) {
    ++g_stats[2];
    Py_RETURN_NOTIMPLEMENTED;
  }
  const Entry e = it->second;
  if (t_choices == nullptr) {  // the thread's dict of dispatch's last choices, once per thread
    t_choices = PyObject_CallNoArgs(g_choices_of);
    if (t_choices == nullptr) return nullptr;
  }
  static PyObject* const names[kNumOps] = {
      PyUnicode_InternFromString("selective_scan"), PyUnicode_InternFromString("cross_scan"),
      PyUnicode_InternFromString("cross_merge"), PyUnicode_InternFromString("add_layer_norm"),
      PyUnicode_InternFromString("dwconv2d"), PyUnicode_InternFromString("ss2d_core")};
  if (PyDict_SetItem(t_choices, names[op], e.name) != 0) return nullptr;
  if (e.native) {
    ++g_stats[0];
    return run(op, e.ks, args + 2);
  }
  ++g_stats[1];
  // the entry's references outlive the call even if the call clears the table (it holds its own)
  Py_INCREF(e.fast);
  Py_INCREF(e.prepared);
  PyObject* record = PyObject_Vectorcall(e.fast, args + 2, size_t(nargs - 2), nullptr);
  PyObject* out = record == nullptr ? nullptr : PyObject_CallOneArg(e.prepared, record);
  Py_XDECREF(record);
  Py_DECREF(e.fast);
  Py_DECREF(e.prepared);
  return out;
  END_HANDLE_TH_ERRORS
}

// fast_call_put(op, impl, args: tuple, ks: int | None, backend_name: str, fast, prepared) -> bool: calls with these
// arguments' metadata (in the current context) run through kernel set ks from now on, or where ks is None as
// prepared(fast(*args)); False where the arguments are not encodable
PyObject* fast_call_put(PyObject* /*module*/, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  if (nargs != 7 || !PyTuple_Check(args[2]) || !PyUnicode_CheckExact(args[4]) || !PyCallable_Check(args[5]) ||
      !PyCallable_Check(args[6])) {
    PyErr_SetString(PyExc_TypeError, "fast_call_put(op, impl, args: tuple, ks: int | None, backend_name: str, "
                                     "fast: callable, prepared: callable)");
    return nullptr;
  }
  int op = 0;
  if (!op_of(args[0], PyTuple_GET_SIZE(args[2]), &op)) return nullptr;
  const bool native = args[3] != Py_None;
  if (native && op == kSs2dCore) {
    PyErr_SetString(PyExc_ValueError, "fast_call_put: ss2d_core has no native entry (ks must be None)");
    return nullptr;
  }
  const int64_t ks = native ? int_of(args[3]) : 0;
  host::KeyBuffer k;
  if (!make_key(k, op, args[1], &PyTuple_GET_ITEM(args[2], 0), PyTuple_GET_SIZE(args[2]))) Py_RETURN_FALSE;
  auto& t = table();
  if (t.size() >= kMaxEntries) {
    for (auto& kv : t) release(kv.second);
    t.clear();
  }
  Entry e{native, ks, args[4], native ? nullptr : args[5], native ? nullptr : args[6]};
  Py_XINCREF(e.name);
  Py_XINCREF(e.fast);
  Py_XINCREF(e.prepared);
  auto [it, fresh] = t.try_emplace(k.str(), e);
  if (!fresh) {
    release(it->second);
    it->second = e;
  }
  Py_RETURN_TRUE;
  END_HANDLE_TH_ERRORS
}

// fast_call_clear(): forget every prepared call (dispatch.clear_choice_cache)
PyObject* fast_call_clear(PyObject* /*module*/, PyObject* /*unused*/) {
  auto& t = table();
  for (auto& kv : t) release(kv.second);
  t.clear();
  Py_RETURN_NONE;
}

// fast_call_setup(registry: dict, thread_choices: callable) -> None, once, by dispatch
PyObject* fast_call_setup(PyObject* /*module*/, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2 || !PyDict_Check(args[0]) || !PyCallable_Check(args[1])) {
    PyErr_SetString(PyExc_TypeError, "fast_call_setup(registry: dict, thread_choices: callable)");
    return nullptr;
  }
  Py_INCREF(args[0]);
  Py_INCREF(args[1]);
  Py_XSETREF(g_registry, args[0]);
  Py_XSETREF(g_choices_of, args[1]);
  Py_RETURN_NONE;
}

// fast_call_size() -> int: how many prepared calls it holds; fast_call_stats() -> (native hits, Python hits,
// misses) since the process started (tests, and what a benchmark ran)
PyObject* fast_call_size(PyObject* /*module*/, PyObject* /*unused*/) {
  return PyLong_FromSize_t(table().size());
}
PyObject* fast_call_stats(PyObject* /*module*/, PyObject* /*unused*/) {
  return Py_BuildValue("(LLL)", (long long)g_stats[0], (long long)g_stats[1], (long long)g_stats[2]);
}

}  // namespace

PyMethodDef* method_defs() {
  static PyMethodDef defs[] = {
      {"fast_call", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fast_call)), METH_FASTCALL,
       "fast_call(op, impl, *args) -> result | NotImplemented: a public call prepared before, in one C++ call "
       "(vmamba_kernels.dispatch.fast_call)"},
      {"fast_call_put", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fast_call_put)), METH_FASTCALL,
       "fast_call_put(op, impl, args, ks, backend_name, fast, prepared) -> bool"},
      {"fast_call_clear", fast_call_clear, METH_NOARGS, "fast_call_clear() -> None"},
      {"fast_call_setup", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fast_call_setup)),
       METH_FASTCALL, "fast_call_setup(registry, thread_choices) -> None"},
      {"fast_call_size", fast_call_size, METH_NOARGS, "fast_call_size() -> int"},
      {"fast_call_stats", fast_call_stats, METH_NOARGS,
       "fast_call_stats() -> (native hits, Python hits, misses)"},
      {nullptr, nullptr, 0, nullptr}};
  return defs;
}

}  // namespace fast
}  // namespace vmamba
#endif
