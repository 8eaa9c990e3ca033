"""Pair making: candidates per prompt (generate), and from them a DPO dataset (label)."""
