"""vmamba_kernels.tuning: one frozen dataclass per backend, changed for a while by a context manager that
the kernels' sizing reads (CPU; no triton, CuPy or extension needed)."""
import dataclasses
import re
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
import torch

import vmamba_kernels as vk
from vmamba_kernels import tunables

ROOT = Path(__file__).resolve().parents[1]


def test_every_backend_with_constants_has_a_frozen_tuning():
    for name in ("cuda", "triton", "cupy"):
        t = vk.get_tuning(name)
        with pytest.raises(FrozenInstanceError):
            t.__setattr__("x", 1)
    with pytest.raises(TypeError):  # mapping fields are read-only views
        vk.get_tuning("triton").band_scan["band"] = 8
    with pytest.raises(ValueError, match="no tuning for 'torch'; backends with one: cuda, cupy, triton"):
        vk.get_tuning("torch")


def test_context_manager_changes_nests_and_restores():
    default = vk.get_tuning("triton")
    with vk.tuning("triton", fwd_tile=128) as t:
        assert t is vk.get_tuning("triton") and t.fwd_tile == 128 and t.bwd_tile == default.bwd_tile
        with vk.tuning("triton", bwd_tile=64):
            assert (vk.get_tuning("triton").fwd_tile, vk.get_tuning("triton").bwd_tile) == (128, 64)
        assert vk.get_tuning("triton").bwd_tile == default.bwd_tile
        with pytest.raises(RuntimeError, match="boom"):
            with vk.tuning("triton", fwd_tile=32):
                raise RuntimeError("boom")
        assert vk.get_tuning("triton").fwd_tile == 128
    assert vk.get_tuning("triton") == default
    with pytest.raises(TypeError, match="TritonTuning has no field.*fwd_tiles; fields: "):
        with vk.tuning("triton", fwd_tiles=1):
            pass
    with pytest.raises(TypeError, match="CupyTuning has no field"):
        with vk.tuning("cupy", items_choices=(3,)):
            pass


def test_sizing_reads_the_current_tuning(monkeypatch):
    from vmamba_kernels.cupy import tuning as cupy_tuning
    from vmamba_kernels.triton import tuning as triton_tuning

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert triton_tuning.chunk_len(3136, 1) == 64
    with vk.tuning("triton", chunk_override={(3136, 1): 128}):
        assert triton_tuning.chunk_len(3136, 1) == 128
        assert triton_tuning.scan_aux_shape(2, 8, 3136, 1, torch.float16)[0] == (2, 8, 25, 1)
    with vk.tuning("triton", tuned_chunk={(3136, 1): 256}):
        assert triton_tuning.chunk_len(3136, 1) == 256
    monkeypatch.delenv("VMAMBA_SCAN_SEQ_MIN_ROWS", raising=False)
    assert cupy_tuning.knobs().scan_seq_min_rows == ""
    with vk.tuning("cupy", scan_seq_min_rows=0, cross_cl_tiled="b"):
        assert cupy_tuning.knobs().scan_seq_min_rows == "0" and cupy_tuning.knobs().cross_cl_tiled == "b"
    monkeypatch.setenv("VMAMBA_SCAN_SEQ_MIN_ROWS", "12")  # None: the environment's value, as the extension
    assert cupy_tuning.knobs().scan_seq_min_rows == "12"


def test_apply_hook_sees_each_change_and_the_restore():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Demo:
        a: int = 1

    calls = []
    t = tunables.register("test_demo", Demo(), apply=lambda new, old: calls.append((old.a, new.a)))
    try:
        with vk.tuning("test_demo", a=2):
            with vk.tuning("test_demo", a=2):  # no change: no call
                pass
        assert calls == [(1, 2), (2, 1)] and t.get() == Demo()
        with pytest.raises(ValueError, match="already registered"):
            tunables.register("test_demo", Demo())
    finally:
        del tunables._TUNABLES["test_demo"]


def test_cuda_tuning_fields_are_the_extensions_knobs():
    """Every CudaTuning field is a knob of csrc/common/knobs.h (VMAMBA_<FIELD>) and the other way round, and
    the values reach the extension as the strings its parsers read."""
    from vmamba_kernels.cuda import CudaTuning, knob_values

    text = (ROOT / "csrc" / "common" / "knobs.h").read_text()
    names = re.search(r"kKnobNames\[[^]]*\] = \{(.*?)\};", text, re.S).group(1)
    assert set(re.findall(r'"(VMAMBA_\w+)"', names)) == set(knob_values(CudaTuning()))
    assert knob_values(CudaTuning(scan_poison=True, cross_cl_tiled="b", scan_seq_min_rows=0)) == {
        **dict.fromkeys(knob_values(CudaTuning()), ""),
        "VMAMBA_SCAN_POISON": "1", "VMAMBA_CROSS_CL_TILED": "b", "VMAMBA_SCAN_SEQ_MIN_ROWS": "0"}


@pytest.mark.parametrize("env_read", ["posix_data", "os_environ_get"])
def test_cupy_knobs_read_every_variable_at_each_call(monkeypatch, env_read):
    """knobs() is cached per tuning value and environment: a variable set after an earlier call is seen, each of
    them, and a tuning value still wins over the environment (both ways of reading the environment)."""
    from vmamba_kernels import _environ
    from vmamba_kernels.cupy import tuning as cupy_tuning

    if env_read == "os_environ_get":
        monkeypatch.setattr(_environ, "_DATA", None)
    elif _environ._DATA is None:
        pytest.skip("os.environ has no POSIX data dict here")

    names = [f.name for f in dataclasses.fields(cupy_tuning.CupyTuning)]
    for n in names:
        monkeypatch.delenv("VMAMBA_" + n.upper(), raising=False)
    assert all(getattr(cupy_tuning.knobs(), n) == "" for n in names)
    for i, n in enumerate(names):
        monkeypatch.setenv("VMAMBA_" + n.upper(), str(i + 3))
        assert getattr(cupy_tuning.knobs(), n) == str(i + 3), n
    with vk.tuning("cupy", cross_path="direct"):
        assert cupy_tuning.knobs().cross_path == "direct"
    monkeypatch.delenv("VMAMBA_CROSS_PATH")
    assert cupy_tuning.knobs().cross_path == ""
