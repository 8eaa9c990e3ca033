"""dpo-tui: a terminal experiment console for DPO. Imports nothing on purpose (start-up budget)."""

__version__ = "0.1.0"
