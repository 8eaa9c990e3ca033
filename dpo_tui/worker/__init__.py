"""Child processes: the trainer, its supervisor, the chat and export workers.

Heavy libraries (torch, transformers, trl, peft, datasets) are imported inside functions only,
so ``python -m dpo_tui.worker.X --help`` stays instant and the UI never pays for them.
"""
