"""Pure logic shared by the UI, the CLI and the workers.

Never imports textual, torch, transformers, trl, peft or datasets (``docs/design/import-worlds.md``).
"""
