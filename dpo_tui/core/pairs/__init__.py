"""Pair making: prompts → sampled candidates → labelled preference pairs (a DPO dataset)."""
