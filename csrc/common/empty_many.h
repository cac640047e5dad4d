// empty_many(like, (shape, dtype), (shape, dtype), ...) -> tuple of uninitialised tensors on like's device: the
// output and scratch tensors of a Python backend's raw kernel (triton, cupy) made in one call. torch.empty parses
// its arguments in Python for every tensor; one call of this costs less than half as much for the scan forward's
// three (reports/logs/2026-12-07_empty_many_cpu.md). A plain CPython function (METH_FASTCALL), as the
// host helpers of arg_key.h; vmamba_kernels/_alloc.py falls back to torch.empty where the extension lacks it.
#pragma once

#include <Python.h>
#include <torch/csrc/Dtype.h>
#include <torch/csrc/autograd/python_variable.h>

#include <ATen/ATen.h>
#include <c10/util/SmallVector.h>

#include "alloc.h"

#include <string>

namespace vmamba::host {

inline PyObject* empty_many_error(PyObject* type, const std::string& what) {
  PyErr_SetString(type, ("vmamba_kernels._C.empty_many: " + what).c_str());
  return nullptr;
}

inline PyObject* empty_many(PyObject* /*module*/, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 1 || !THPVariable_Check(args[0]))
    return empty_many_error(PyExc_TypeError, "the first argument must be a tensor (its device is used)");
  const at::Tensor& like = THPVariable_Unpack(args[0]);
  PyObject* out = PyTuple_New(nargs - 1);
  if (out == nullptr) return nullptr;
  try {
    for (Py_ssize_t i = 1; i < nargs; ++i) {
      PyObject* spec = args[i];
      if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(spec, 0)) ||
          !THPDtype_Check(PyTuple_GET_ITEM(spec, 1))) {
        Py_DECREF(out);
        return empty_many_error(PyExc_TypeError, "argument " + std::to_string(i) +
                                                     " must be a (shape tuple, torch.dtype) pair");
      }
      PyObject* shape = PyTuple_GET_ITEM(spec, 0);
      const Py_ssize_t dims = PyTuple_GET_SIZE(shape);
      c10::SmallVector<int64_t, 6> sizes(dims);
      for (Py_ssize_t d = 0; d < dims; ++d) {
        const long long v = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, d));
        if (v == -1 && PyErr_Occurred()) {
          Py_DECREF(out);
          return nullptr;  // not an int (Python's TypeError / OverflowError)
        }
        if (v < 0) {
          Py_DECREF(out);
          return empty_many_error(PyExc_ValueError, "argument " + std::to_string(i) + " has a negative size " +
                                                        std::to_string(v));
        }
        sizes[d] = v;
      }
      const auto dtype = reinterpret_cast<THPDtype*>(PyTuple_GET_ITEM(spec, 1))->scalar_type;
      PyObject* t = THPVariable_Wrap(::vmamba::empty_on(sizes, dtype, like));
      if (t == nullptr) {
        Py_DECREF(out);
        return nullptr;
      }
      PyTuple_SET_ITEM(out, i - 1, t);
    }
  } catch (const std::exception& e) {  // at::empty's errors (out of memory) as Python's RuntimeError
    Py_DECREF(out);
    return empty_many_error(PyExc_RuntimeError, e.what());
  }
  return out;
}

inline PyMethodDef kEmptyManyDef = {
    "empty_many", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(empty_many)), METH_FASTCALL,
    "empty_many(like, (shape, dtype), ...) -> tuple of uninitialised tensors on like's device"};

}  // namespace vmamba::host
