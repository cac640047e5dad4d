// arg_key(args: tuple) -> bytes | None: the metadata of a public call's arguments as one bytes object, the key
// vmamba_kernels.dispatch.prepare caches its checked calls by (dispatch.arg_key). It encodes what the Python
// key (dispatch._arg_meta) holds: for a torch.Tensor or nn.Parameter which of the two, dtype, layout, device,
// requires_grad, whether it is contiguous (a prepared call of contiguous inputs skips the .contiguous() calls) and
// sizes; for None, a bool, an int, a float, a str or a torch.dtype its type and value. Anything
// else (a tensor subclass: its type object could be freed and its address reused while the key lives; a tensor
// with symbolic sizes, an int past 64 bits, a str too long for the buffer) gives None, and the caller keys the
// call in Python. Why: building and hashing the Python tuples took 4 us of a 16 us public call on the CI VM; the
// bytes cost a fraction of that and hash once (bench.overhead, path "prepare").
//
// A plain CPython function (METH_O) rather than a pybind11 one: pybind11's argument casting would cost about
// as much as the work.
#pragma once

#include <Python.h>
#include <torch/csrc/Dtype.h>
#include <torch/csrc/autograd/python_variable.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace vmamba {
namespace host {

class KeyBuffer {
 public:
  // false when full: the caller gives up (None)
  bool put(const void* p, size_t n) {
    if (used_ + n > sizeof(buf_)) return false;
    std::memcpy(buf_ + used_, p, n);
    used_ += n;
    return true;
  }
  template <typename T>
  bool put_value(T v) {
    return put(&v, sizeof(v));
  }
  PyObject* bytes() const { return PyBytes_FromStringAndSize(buf_, Py_ssize_t(used_)); }
  std::string str() const { return std::string(buf_, used_); }

 private:
  char buf_[1024];
  size_t used_ = 0;
};

// one argument's record; false: not encodable here
inline bool put_arg(KeyBuffer& k, PyObject* v) {
  if (THPVariable_CheckExact(v)) {  // torch.Tensor or nn.Parameter, no other subclass
    const at::Tensor& t = THPVariable_Unpack(v);
    if (!t.defined() || t.unsafeGetTensorImpl()->has_symbolic_sizes_strides()) return false;
    const char type = Py_TYPE(v) == reinterpret_cast<PyTypeObject*>(THPVariableClass) ? 'T' : 'P';
    const auto sizes = t.sizes();
    return k.put_value(type) && k.put_value(int8_t(t.scalar_type())) &&
           k.put_value(int8_t(t.layout())) && k.put_value(int8_t(t.device().type())) &&
           k.put_value(int8_t(t.device().index())) && k.put_value(uint8_t(t.requires_grad())) &&
           k.put_value(uint8_t(t.is_contiguous())) &&
           k.put_value(uint8_t(sizes.size())) && k.put(sizes.data(), sizes.size() * sizeof(int64_t));
  }
  if (v == Py_None) return k.put_value('N');
  if (PyBool_Check(v)) return k.put_value('b') && k.put_value(uint8_t(v == Py_True));
  if (PyLong_CheckExact(v)) {
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow != 0 || (x == -1 && PyErr_Occurred())) {
      PyErr_Clear();
      return false;
    }
    return k.put_value('i') && k.put_value(int64_t(x));
  }
  if (PyFloat_CheckExact(v)) return k.put_value('f') && k.put_value(PyFloat_AS_DOUBLE(v));
  if (PyUnicode_CheckExact(v)) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(v, &n);
    if (s == nullptr) {
      PyErr_Clear();
      return false;
    }
    return k.put_value('s') && k.put_value(int64_t(n)) && k.put(s, size_t(n));
  }
  if (THPDtype_Check(v)) return k.put_value('d') && k.put_value(int8_t(reinterpret_cast<THPDtype*>(v)->scalar_type));
  return false;
}

inline PyObject* arg_key(PyObject* /*module*/, PyObject* args) {
  if (!PyTuple_Check(args)) {
    PyErr_SetString(PyExc_TypeError, "arg_key takes the tuple of a call's arguments");
    return nullptr;
  }
  KeyBuffer k;
  const Py_ssize_t n = PyTuple_GET_SIZE(args);
  for (Py_ssize_t i = 0; i < n; ++i)
    if (!put_arg(k, PyTuple_GET_ITEM(args, i))) Py_RETURN_NONE;
  return k.bytes();
}

inline PyMethodDef kArgKeyDef = {"arg_key", arg_key, METH_O,
                                 "arg_key(args: tuple) -> bytes | None: the argument metadata key of a public call "
                                 "(vmamba_kernels.dispatch.arg_key)"};

// launch_key(args: tuple) -> (bytes, tuple) | None, for vmamba_kernels/triton/fast_launch.py: what Triton's choice
// of a compiled kernel can see of a launch's positional arguments, as one bytes object, and the arguments as the C
// launcher takes them. A torch.Tensor or nn.Parameter: its dtype, whether its address is 16-byte aligned and whether
// it is a CUDA tensor in the key, its address (an int) in the tuple. None, a bool, an int or a float: its type and
// value in the key, itself in the tuple. Anything else (a tensor subclass, a non-strided tensor, an int past 64
// bits) gives None, and fast_launch builds both in Python. Why: with it the scan forward's raw call took 11.0 instead
// of 15.0 us on the CI VM (10 tensors, 7 ints; reports/logs/2026-12-07_launch_key.md).
inline PyObject* launch_key(PyObject* /*module*/, PyObject* args) {
  if (!PyTuple_Check(args)) {
    PyErr_SetString(PyExc_TypeError, "launch_key takes the tuple of a launch's positional arguments");
    return nullptr;
  }
  const Py_ssize_t n = PyTuple_GET_SIZE(args);
  PyObject* launch_args = PyTuple_New(n);
  if (launch_args == nullptr) return nullptr;
  KeyBuffer k;
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* v = PyTuple_GET_ITEM(args, i);
    PyObject* item = nullptr;
    bool ok = false;
    if (THPVariable_CheckExact(v)) {
      const at::Tensor& t = THPVariable_Unpack(v);
      if (t.defined() && t.layout() == c10::kStrided && t.has_storage()) {
        // the address as Tensor.data_ptr() gives it (which is what Triton's launcher would read); a tensor that
        // refuses it (a functorch wrapper, say) goes to the Python path and its error
        uintptr_t p = 0;
        try {
          p = reinterpret_cast<uintptr_t>(t.data_ptr());
        } catch (const std::exception&) {
          Py_DECREF(launch_args);
          Py_RETURN_NONE;
        }
        ok = k.put_value('T') && k.put_value(int8_t(t.scalar_type())) && k.put_value(uint8_t((p & 15) == 0)) &&
             k.put_value(uint8_t(t.is_cuda()));
        if (ok) item = PyLong_FromUnsignedLongLong(static_cast<unsigned long long>(p));
      }
    } else if (v == Py_None || PyBool_Check(v) || PyLong_CheckExact(v) || PyFloat_CheckExact(v)) {
      ok = put_arg(k, v);
      if (ok) {
        Py_INCREF(v);
        item = v;
      }
    }
    if (!ok || item == nullptr) {
      Py_DECREF(launch_args);
      if (PyErr_Occurred()) return nullptr;  // out of memory making the int
      Py_RETURN_NONE;
    }
    PyTuple_SET_ITEM(launch_args, i, item);
  }
  PyObject* key = k.bytes();
  if (key == nullptr) {
    Py_DECREF(launch_args);
    return nullptr;
  }
  PyObject* out = PyTuple_Pack(2, key, launch_args);
  Py_DECREF(key);
  Py_DECREF(launch_args);
  return out;
}

inline PyMethodDef kLaunchKeyDef = {"launch_key", launch_key, METH_O,
                                    "launch_key(args: tuple) -> (bytes, tuple) | None: a Triton launch's configuration "
                                    "key and arguments (vmamba_kernels/triton/fast_launch.py)"};

}  // namespace host
}  // namespace vmamba
