"""What the operator is told when a run will execute code shipped with its model (``trust_remote_code``)."""

from __future__ import annotations


def trust_remote_code_warning(model: str) -> str:
    """The warning ``train`` and ``ladder`` print before launching a run with ``--trust-remote-code``."""
    return (f"--trust-remote-code: the trainer will import and run the Python code shipped with {model}, "
            "with your permissions. Only do this for models whose authors you trust.")
