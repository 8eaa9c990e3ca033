"""What the setup screens share: the chosen model and dataset and the experiment values so far.

The App owns one :class:`SetupState`; the model, dataset and experiment screens read and update it.
Pure: no Textual, and ``core.config`` only inside functions (it pulls in pydantic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.data import DataReport
    from ..core.models import ModelInfo


@dataclass
class SetupState:
    model: str | None = None
    """Model spec as the operator gave it (``sample``, a path, or a hub id)."""
    model_info: ModelInfo | None = None
    """The chosen model, once inspected."""
    dataset: str | None = "sample"
    """Dataset spec (``sample``, a path, or a hub id)."""
    data_report: DataReport | None = None
    """The chosen dataset's lint report, once checked."""
    values: dict[str, Any] = field(default_factory=dict)
    """Experiment values the operator set (RunConfig field → value), on top of :meth:`base_values`."""

    def base_values(self) -> dict[str, Any]:
        """Where the experiment form starts: the sample preset for the sample model, else the defaults."""
        from ..core.run_defaults import default_values

        return default_values({"model": self.model or "sample", "dataset": self.dataset or "sample"})

    def config_values(self) -> dict[str, Any]:
        """Every value the operator set, over the base: what ``build_config`` validates."""
        values = self.base_values()
        values.update(self.values)
        if self.model:
            values["model"] = self.model
        if self.dataset:
            values["dataset"] = self.dataset
        return values

    def max_length(self) -> int:
        from ..core.config import RunConfig

        value = self.config_values().get("max_length", RunConfig.model_fields["max_length"].default)
        try:
            return max(1, int(value))
        except (TypeError, ValueError):
            return int(RunConfig.model_fields["max_length"].default)

    def batch_size(self) -> int:
        from ..core.config import RunConfig

        value = self.config_values().get("per_device_batch_size", RunConfig.model_fields["per_device_batch_size"].default)
        try:
            return max(1, int(value))
        except (TypeError, ValueError):
            return 1

    def model_label(self) -> str:
        if not self.model or self.model == "sample":
            return "tiny-chat (sample)"
        return self.model.rstrip("/").rsplit("/", 1)[-1] if self.model.startswith(("/", ".", "~")) else self.model

    def dataset_label(self) -> str:
        if not self.dataset or self.dataset == "sample":
            return "sample prefs (standard)"
        return self.dataset
