"""The Textual console. Imports textual, rich and dpo_tui.core only (never the ML stack).

Entry point: :func:`dpo_tui.ui.app.run_app`.
"""
