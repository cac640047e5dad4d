// Tuning and test knobs of the cuda backend (VMAMBA_SCAN_* / VMAMBA_CROSS_* / VMAMBA_SS2D_*, documented where they are
// used): each is read from the environment once, on first use, and may then be changed at run time by
// the op vmamba_cuda::set_knob (csrc/module.cpp; from Python `with vmamba_kernels.tuning("cuda",
// scan_poison=True): ...`). An empty value means unset (the built-in rule); set_knob(name, "") restores
// the value the environment had. Plain host C++ (no ATen): the host emulation of the cross-scan bodies
// (tests/test_cuda_cross_scan.py) compiles it too.
#pragma once

#include <cstdlib>
#include <mutex>
#include <string>

namespace vmamba {

enum class Knob : int {
  kScanPoison, kScanSeqMinRows, kScanBwdSplits, kScanPackedRows,
  kCrossMaxVec, kCrossSmemKb, kCrossPath, kCrossClTiled, kCrossClBand, kCrossClTile,
  kSs2dBwdSplits, kSs2dGlobalAcc, kSs2dWarps, kSs2dFwdSeg, kSs2dBwdSeg, kSs2dFwdSweep, kSs2dSweepMma,
  kCount
};

constexpr const char* kKnobNames[int(Knob::kCount)] = {
    "VMAMBA_SCAN_POISON", "VMAMBA_SCAN_SEQ_MIN_ROWS", "VMAMBA_SCAN_BWD_SPLITS", "VMAMBA_SCAN_PACKED_ROWS",
    "VMAMBA_CROSS_MAX_VEC", "VMAMBA_CROSS_SMEM_KB", "VMAMBA_CROSS_PATH", "VMAMBA_CROSS_CL_TILED",
    "VMAMBA_CROSS_CL_BAND", "VMAMBA_CROSS_CL_TILE", "VMAMBA_SS2D_BWD_SPLITS",
    "VMAMBA_SS2D_GLOBAL_ACC", "VMAMBA_SS2D_WARPS", "VMAMBA_SS2D_FWD_SEG", "VMAMBA_SS2D_BWD_SEG",
    "VMAMBA_SS2D_FWD_SWEEP", "VMAMBA_SS2D_SWEEP_MMA"};

struct KnobTable {
  std::mutex m;
  std::string env[int(Knob::kCount)];    // as the environment had them at first use
  std::string value[int(Knob::kCount)];  // current
  KnobTable() {
    for (int i = 0; i < int(Knob::kCount); ++i) {
      const char* s = std::getenv(kKnobNames[i]);
      env[i] = value[i] = s != nullptr ? s : "";
    }
  }
};

inline KnobTable& knob_table() {
  static KnobTable t;  // one per process (inline function: one instance across translation units)
  return t;
}

// The knob's current value, "" when unset.
inline std::string knob(Knob k) {
  KnobTable& t = knob_table();
  std::lock_guard<std::mutex> g(t.m);
  return t.value[int(k)];
}

// Sets knob `name` (one of kKnobNames) to `value` ("" restores the environment's value); false for an
// unknown name.
inline bool set_knob(const std::string& name, const std::string& value) {
  KnobTable& t = knob_table();
  for (int i = 0; i < int(Knob::kCount); ++i) {
    if (name == kKnobNames[i]) {
      std::lock_guard<std::mutex> g(t.m);
      t.value[i] = value.empty() ? t.env[i] : value;
      return true;
    }
  }
  return false;
}

// "NAME=value;..." of every knob (unset ones with an empty value).
inline std::string knob_list() {
  KnobTable& t = knob_table();
  std::lock_guard<std::mutex> g(t.m);
  std::string s;
  for (int i = 0; i < int(Knob::kCount); ++i) {
    if (i) s += ';';
    s += std::string(kKnobNames[i]) + "=" + t.value[i];
  }
  return s;
}

}  // namespace vmamba
