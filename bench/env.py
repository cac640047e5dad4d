"""Environment capture attached to every result: what ran, where, on which software.

`capture(device)` returns a flat dict (JSON-serialisable): GPU name, driver, clocks, power, memory and
temperature through nvidia-ml-py (pynvml) when present, torch / CUDA / cuDNN / Triton / CuPy versions,
the cuDNN and TF32 flags, git sha (+ dirty flag), hostname and a UTC timestamp.
`gpu_label(device)` is the short name written in the CSV `gpu` column ("cpu" on the CPU).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git(*args) -> str:
    try:
        r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


_GIT_CACHE: dict = {}


def git_info() -> dict:
    """sha (12 hex, or 'unknown'), dirty flag (tracked files modified), branch. Cached per process.

    $GIT_SHA, when set, wins over the checkout's own git metadata: a copy of the tree sent to another
    machine (the GPU runs) can carry a stale .git that names an older commit as a dirty HEAD."""
    if not _GIT_CACHE:
        forced = os.environ.get("GIT_SHA", "").strip()
        if len(forced) > 12 and all(c in "0123456789abcdef" for c in forced.lower()):
            forced = forced[:12]  # a full sha: the 12-hex form every row uses
        if forced:
            _GIT_CACHE.update(git_sha=forced, git_dirty=False, git_branch="")
        else:
            sha = _git("rev-parse", "--short=12", "HEAD") or "unknown"
            status = _git("status", "--porcelain", "--untracked-files=no")
            _GIT_CACHE.update(git_sha=sha, git_dirty=bool(status), git_branch=_git("rev-parse", "--abbrev-ref", "HEAD"))
    return dict(_GIT_CACHE)


def git_sha_label() -> str:
    g = git_info()
    return g["git_sha"] + ("-dirty" if g["git_dirty"] else "")


def _versions() -> dict:
    import torch  # noqa: PLC0415

    v = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
         "cudnn": None, "triton": None, "cupy": None, "timm": None}
    try:
        v["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # noqa: BLE001 (a broken cuDNN must not stop a benchmark from recording)
        v["cudnn"] = None
    for mod in ("triton", "cupy", "timm"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            v[mod] = None
    return v


def _flags() -> dict:
    import torch  # noqa: PLC0415

    return {
        "cudnn_enabled": torch.backends.cudnn.enabled,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def _nvml(index: int) -> dict:
    """Clocks, power, memory, temperature of GPU `index` through pynvml; {} when unavailable."""
    try:
        import pynvml  # noqa: PLC0415 (package nvidia-ml-py)
    except ImportError:
        return {"nvml": "nvidia-ml-py not installed"}
    out = {}
    try:
        pynvml.nvmlInit()
    except Exception as e:  # noqa: BLE001
        return {"nvml": f"nvmlInit failed: {e}"}
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(index)

        def get(key, fn):
            try:
                val = fn()
                out[key] = val.decode() if isinstance(val, bytes) else val
            except Exception:  # noqa: BLE001 (some queries are unsupported on some cards)
                out[key] = None

        get("nvml_name", lambda: pynvml.nvmlDeviceGetName(h))
        get("driver", pynvml.nvmlSystemGetDriverVersion)
        get("sm_clock_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM))
        get("mem_clock_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM))
        get("max_sm_clock_mhz", lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM))
        get("max_mem_clock_mhz", lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM))
        get("power_w", lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0)
        get("power_limit_w", lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0)
        get("temperature_c", lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))
        get("mem_total_mb", lambda: pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**20)
        get("mem_used_mb", lambda: pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20)
        get("pstate", lambda: pynvml.nvmlDeviceGetPerformanceState(h))
        get("persistence_mode", lambda: pynvml.nvmlDeviceGetPersistenceMode(h))
        get("mig_mode", lambda: pynvml.nvmlDeviceGetMigMode(h)[0])
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
    return out


def gpu_label(device=None) -> str:
    """Short device name for the CSV `gpu` column: the CUDA device name, or "cpu"."""
    import torch  # noqa: PLC0415

    dev = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    if dev.type != "cuda":
        return "cpu"
    return torch.cuda.get_device_name(dev)


def capture(device=None) -> dict:
    """Everything worth recording next to a result (flat dict, JSON-serialisable)."""
    import torch  # noqa: PLC0415

    dev = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    env = {"timestamp": utc_now(), "hostname": socket.gethostname(), "platform": platform.platform(),
           "cpu_count": os.cpu_count(), "gpu": gpu_label(dev)}
    env.update(git_info())
    env.update(_versions())
    env.update(_flags())
    if dev.type == "cuda":
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        p = torch.cuda.get_device_properties(idx)
        env.update(device_index=idx, capability=f"{p.major}.{p.minor}", sm_count=p.multi_processor_count,
                   device_mem_mb=round(p.total_memory / 2**20))
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        nvml_idx = idx
        if visible:  # NVML numbers physical devices
            try:
                nvml_idx = int(visible.split(",")[idx])
            except (ValueError, IndexError):
                nvml_idx = idx
        env.update(_nvml(nvml_idx))
    return env


def env_json(env: dict) -> str:
    return json.dumps(env, sort_keys=True, default=str, separators=(",", ":"))


def summary_line(env: dict) -> str:
    """One human line: device, driver, clocks, software."""
    bits = [env.get("gpu", "?")]
    if env.get("driver"):
        bits.append(f"driver {env['driver']}")
    if env.get("sm_clock_mhz") is not None:
        bits.append(f"SM {env['sm_clock_mhz']}/{env.get('max_sm_clock_mhz')} MHz")
    if env.get("power_w") is not None:
        bits.append(f"{env['power_w']:.0f}/{env.get('power_limit_w') or 0:.0f} W")
    if env.get("temperature_c") is not None:
        bits.append(f"{env['temperature_c']} C")
    bits.append(f"torch {env.get('torch')} (CUDA {env.get('torch_cuda')}, cuDNN {env.get('cudnn')})")
    bits.append(f"triton {env.get('triton')}, cupy {env.get('cupy')}")
    bits.append(f"cudnn.benchmark={env.get('cudnn_benchmark')}, tf32 matmul={env.get('tf32_matmul')} "
                f"cudnn={env.get('tf32_cudnn')}")
    bits.append(f"git {env.get('git_sha')}{'-dirty' if env.get('git_dirty') else ''}")
    return " | ".join(bits)
