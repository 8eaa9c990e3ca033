"""GPU inventory through NVML: memory, utilisation and who is using each card.

``inventory()`` is cheap (a few NVML calls per GPU, NVML initialised once per process), so the
UI can refresh it every few seconds. Without NVML (no ``nvidia-ml-py``, no driver, no GPU) it
returns ``cpu_only=True`` with the reason and the machine's RAM, and never raises.

Indices are NVML's (physical order), which is what ``CUDA_VISIBLE_DEVICES`` selects by default.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field
from typing import Any

_nvml_lock = threading.Lock()
_nvml_state: dict[str, Any] = {"ready": False, "error": None, "module": None}


@dataclass
class GpuProcess:
    """One process holding memory on a GPU."""

    pid: int
    used_bytes: int | None
    user: str | None = None
    name: str | None = None


@dataclass
class GpuInfo:
    index: int
    name: str
    memory_total: int
    memory_used: int
    memory_free: int
    utilization: int | None = None
    """GPU busy percentage over the last sample period (None when the driver does not report it)."""
    memory_utilization: int | None = None
    temperature: int | None = None
    uuid: str | None = None
    bf16: bool | None = None
    """Compute capability ≥ 8.0 (Ampere and newer) supports bf16; None when unknown."""
    processes: list[GpuProcess] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return bool(self.processes)

    def others(self, user: str | None = None) -> list[GpuProcess]:
        """Processes on this GPU that belong to somebody else (``user`` defaults to this login).

        A process whose owner NVML/psutil cannot tell (another container's pid) counts as another
        user's: its memory is just as taken.
        """
        me = user if user is not None else current_user()
        return [p for p in self.processes if p.user is None or p.user.split("\\")[-1] != me]


@dataclass
class GpuInventory:
    gpus: list[GpuInfo] = field(default_factory=list)
    cpu_only: bool = True
    ram_total: int = 0
    ram_available: int = 0
    error: str | None = None
    """Why there are no GPUs (NVML missing, no driver, no device); None when GPUs were found."""
    driver: str | None = None

    def describe(self) -> str:
        gib = 1024**3
        if self.cpu_only:
            reason = f" ({self.error})" if self.error else ""
            return f"CPU-only{reason}; RAM {self.ram_available / gib:.1f} GiB free of {self.ram_total / gib:.1f} GiB"
        parts = [f"GPU {g.index} {g.name}: {g.memory_free / gib:.1f} GiB free of {g.memory_total / gib:.1f} GiB" for g in self.gpus]
        return "; ".join(parts)

    def visible(self) -> list[GpuInfo]:
        """The GPUs this process may use (see :func:`cuda_visible_ids`), in NVML order."""
        ids = set(cuda_visible_ids(len(self.gpus), [g.uuid for g in self.gpus]))
        return [g for g in self.gpus if g.index in ids]

    def free_bytes(self, indices: list[int] | None = None, count: int = 1) -> int | None:
        """The least free memory among the chosen GPUs (``indices``, else the first ``count``)."""
        if self.cpu_only or not self.gpus:
            return None
        chosen = [g for g in self.gpus if g.index in indices] if indices else self.visible()[: max(1, count)]
        return min(g.memory_free for g in chosen) if chosen else None


def cuda_visible_ids(count: int | None, uuids: list[str | None] | None = None) -> list[int]:
    """The NVML indices that ``CUDA_VISIBLE_DEVICES`` leaves usable, out of ``count`` GPUs.

    dpo-tui numbers GPUs as NVML does (the picker, ``--gpus``, lock names), and the supervisor hands
    the chosen ones to the trainer through ``CUDA_VISIBLE_DEVICES`` with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
    (NVML's order). An operator who started the console with ``CUDA_VISIBLE_DEVICES=4,5`` has excluded
    the others: they are not offered. Unset: every GPU. ``count=None`` (NVML unavailable) trusts the
    variable as given. As in CUDA, the list ends at the first invalid entry (``-1`` hides everything).
    ``GPU-<uuid>`` entries (a unique prefix is enough, as in CUDA) map through ``uuids``, NVML's UUID of
    each index. Without them, and for MIG slices (not whole GPUs), each entry stands for the next GPU.
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return list(range(count or 0))
    items = [item.strip() for item in env.split(",")]
    if uuids is not None and not any(uuids):
        uuids = None  # NVML gave no UUIDs: nothing to map them through
    if any(item.startswith("MIG-") for item in items) or (uuids is None and any(i.startswith("GPU-") for i in items)):
        return list(range(min(len(items), count if count is not None else len(items))))
    ids: list[int] = []
    for item in items:
        if item.startswith("GPU-") and uuids is not None:
            matches = [i for i, uuid in enumerate(uuids) if uuid and uuid.startswith(item)]
            if len(matches) != 1:
                break
            index = matches[0]
        elif item.isdigit() and (count is None or int(item) < count):
            index = int(item)
        else:
            break
        if index not in ids:
            ids.append(index)
    return ids


def nvml_uuids() -> list[str | None] | None:
    """NVML's UUID of each GPU, in index order; None without NVML (no driver, no library, disabled)."""
    nvml = _init_nvml()
    if nvml is None:
        return None
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except Exception:  # noqa: BLE001 - a driver in a bad state reads as no GPU
        return None
    uuids: list[str | None] = []
    for index in range(count):
        try:
            uuids.append(_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index))))
        except Exception:  # noqa: BLE001 - a GPU without a readable UUID is still counted
            uuids.append(None)
    return uuids


@functools.cache
def current_user() -> str:
    """This login's user name (what psutil reports as a process's owner); looked up once, since
    ``getpass`` may fall back to a passwd (LDAP) lookup and the form asks on every keystroke."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return str(os.getuid())


def _ram() -> tuple[int, int]:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    except Exception:  # noqa: BLE001 - RAM is informative only
        return 0, 0


def _init_nvml() -> Any:
    """Import and initialise pynvml once; returns the module or None (reason in _nvml_state)."""
    with _nvml_lock:
        if _nvml_state["ready"]:
            return _nvml_state["module"]
        if _nvml_state["error"] is not None and not os.environ.get("DPO_TUI_NVML_RETRY"):
            return None
        if os.environ.get("DPO_TUI_NO_NVML"):
            _nvml_state["error"] = "NVML disabled (DPO_TUI_NO_NVML)"
            return None
        try:
            import pynvml  # from nvidia-ml-py
        except ImportError:
            _nvml_state["error"] = "nvidia-ml-py (pynvml) is not installed"
            return None
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
            _nvml_state["error"] = f"NVML unavailable: {_nvml_message(exc)}"
            return None
        _nvml_state.update(ready=True, module=pynvml, error=None)
        return pynvml


def _nvml_message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.removeprefix("NVML error: ")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _user_and_name(pid: int) -> tuple[str | None, str | None]:
    try:
        import psutil

        proc = psutil.Process(pid)
        with proc.oneshot():
            return proc.username(), proc.name()
    except Exception:  # noqa: BLE001 - another container's pid, exited, or no permission
        return None, None


def _processes(nvml: Any, handle: Any) -> list[GpuProcess]:
    seen: dict[int, GpuProcess] = {}
    for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        fn = getattr(nvml, getter, None)
        if fn is None:
            continue
        try:
            procs = fn(handle)
        except Exception:  # noqa: BLE001 - a query this driver does not support lists no processes
            continue
        for p in procs:
            pid = int(getattr(p, "pid", 0))
            used = getattr(p, "usedGpuMemory", None)
            used = int(used) if isinstance(used, int) and used >= 0 and used < 1 << 60 else None
            if pid in seen:
                if used:
                    seen[pid].used_bytes = (seen[pid].used_bytes or 0) + used
                continue
            user, name = _user_and_name(pid)
            seen[pid] = GpuProcess(pid=pid, used_bytes=used, user=user, name=name)
    return list(seen.values())


def _gpu(nvml: Any, index: int) -> GpuInfo:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    mem = nvml.nvmlDeviceGetMemoryInfo(handle)
    info = GpuInfo(
        index=index,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        memory_total=int(mem.total),
        memory_used=int(mem.used),
        memory_free=int(mem.free),
    )
    try:
        util = nvml.nvmlDeviceGetUtilizationRates(handle)
        info.utilization, info.memory_utilization = int(util.gpu), int(util.memory)
    except Exception:  # noqa: BLE001 - not supported on some boards / MIG
        pass
    try:
        info.temperature = int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
    except Exception:  # noqa: BLE001 - temperature is informative only
        pass
    try:
        info.uuid = _text(nvml.nvmlDeviceGetUUID(handle))
    except Exception:  # noqa: BLE001 - the UUID is informative only
        pass
    try:
        major, _minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        info.bf16 = int(major) >= 8
    except Exception:  # noqa: BLE001 - unknown capability leaves bf16 unknown
        pass
    info.processes = _processes(nvml, handle)
    return info


def inventory() -> GpuInventory:
    """GPUs with memory, utilisation and processes; CPU-only (with the reason and RAM) when there are none."""
    total, available = _ram()
    inv = GpuInventory(ram_total=total, ram_available=available)
    nvml = _init_nvml()
    if nvml is None:
        inv.error = _nvml_state["error"]
        return inv
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except Exception as exc:  # noqa: BLE001 - a driver in a bad state reads as no GPU, with the reason
        inv.error = f"NVML: {_nvml_message(exc)}"
        return inv
    try:
        inv.driver = _text(nvml.nvmlSystemGetDriverVersion())
    except Exception:  # noqa: BLE001 - the driver version is informative only
        pass
    for index in range(count):
        try:
            inv.gpus.append(_gpu(nvml, index))
        except Exception as exc:  # noqa: BLE001 - one bad GPU (fallen off the bus) must not hide the others
            inv.error = f"GPU {index}: {_nvml_message(exc)}"
    inv.cpu_only = not inv.gpus
    if inv.cpu_only and inv.error is None:
        inv.error = "no NVIDIA GPU found"
    return inv


def reset_for_tests() -> None:
    """Forget NVML state (tests that fake or hide pynvml)."""
    with _nvml_lock:
        _nvml_state.update(ready=False, error=None, module=None)
