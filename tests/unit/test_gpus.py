"""GPU inventory: CPU-only without NVML, and the NVML path against a fake pynvml."""

from __future__ import annotations

import os
import sys
import time
import types

import pytest

from dpo_tui.core import gpus


@pytest.fixture(autouse=True)
def fresh_nvml(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DPO_TUI_NO_NVML", raising=False)
    gpus.reset_for_tests()
    yield
    gpus.reset_for_tests()


def test_nvml_absent_means_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    inv = gpus.inventory()
    assert inv.cpu_only and not inv.gpus
    assert "not installed" in inv.error
    assert inv.ram_total > 0 and 0 < inv.ram_available <= inv.ram_total
    assert "CPU-only" in inv.describe()
    assert inv.free_bytes() is None


def test_nvml_init_failure_means_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("pynvml")

    def boom() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    fake.nvmlInit = boom
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    inv = gpus.inventory()
    assert inv.cpu_only and "Shared Library Not Found" in inv.error


def test_disabled_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPO_TUI_NO_NVML", "1")
    inv = gpus.inventory()
    assert inv.cpu_only and "disabled" in inv.error


def _fake_nvml(n_gpus: int = 2) -> types.ModuleType:
    GiB = 1024**3
    fake = types.ModuleType("pynvml")
    fake.NVML_TEMPERATURE_GPU = 0
    fake.nvmlInit = lambda: None
    fake.nvmlDeviceGetCount = lambda: n_gpus
    fake.nvmlSystemGetDriverVersion = lambda: b"580.1"
    fake.nvmlDeviceGetHandleByIndex = lambda i: i
    fake.nvmlDeviceGetName = lambda h: "NVIDIA H100 80GB HBM3"
    fake.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80 * GiB, used=(10 + 20 * h) * GiB, free=(70 - 20 * h) * GiB)
    fake.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=37 * h, memory=5)
    fake.nvmlDeviceGetTemperature = lambda h, kind: 40
    fake.nvmlDeviceGetUUID = lambda h: f"GPU-{h}"
    fake.nvmlDeviceGetCudaComputeCapability = lambda h: (9, 0)

    def procs(h: int) -> list:
        if h == 1:
            return [types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=3 * GiB), types.SimpleNamespace(pid=999_999_999, usedGpuMemory=None)]
        return []

    fake.nvmlDeviceGetComputeRunningProcesses = procs
    fake.nvmlDeviceGetGraphicsRunningProcesses = lambda h: []
    return fake


def test_nvml_inventory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml())
    inv = gpus.inventory()
    assert not inv.cpu_only and inv.error is None and inv.driver == "580.1"
    g0, g1 = inv.gpus
    assert g0.name.startswith("NVIDIA H100") and g0.memory_total == 80 * 1024**3
    assert g1.utilization == 37 and g1.bf16 and g1.uuid == "GPU-1"
    assert not g0.busy and g1.busy
    me, ghost = g1.processes
    assert me.pid == os.getpid() and me.used_bytes == 3 * 1024**3 and me.user  # this process: user resolved
    assert ghost.user is None and ghost.used_bytes is None  # a pid we cannot see
    assert inv.free_bytes() == 70 * 1024**3
    assert inv.free_bytes(count=2) == 50 * 1024**3
    assert inv.free_bytes(indices=[1]) == 50 * 1024**3
    assert "GPU 1" in inv.describe()


def test_one_bad_gpu_does_not_hide_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_nvml(2)
    good = fake.nvmlDeviceGetMemoryInfo

    def flaky(h: int):
        if h == 0:
            raise RuntimeError("GPU is lost")
        return good(h)

    fake.nvmlDeviceGetMemoryInfo = flaky
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    inv = gpus.inventory()
    assert [g.index for g in inv.gpus] == [1] and not inv.cpu_only
    assert "GPU 0" in inv.error


def test_cheap_enough_to_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(8))
    gpus.inventory()
    start = time.perf_counter()
    for _ in range(20):
        gpus.inventory()
    assert (time.perf_counter() - start) / 20 < 0.05


def test_real_machine_never_raises() -> None:
    inv = gpus.inventory()  # whatever this box has
    assert isinstance(inv, gpus.GpuInventory)
    assert inv.cpu_only == (not inv.gpus)
