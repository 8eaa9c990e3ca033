"""Pair making: from a file of prompts to candidates (generate) to a preference dataset (label).

A pairs job folder is the ``--out`` folder itself; its layout and the ``candidates.jsonl`` format are
described in :mod:`.candidates` and :mod:`.plan`. Core world: no torch, no textual.
"""

from __future__ import annotations

from .candidates import Candidate, CandidateRow, CandidatesScan, read_candidates, scan_candidates
from .plan import (
           PairsJobView,
           PairsPlan,
           pairs_job_dirs,
           plan_pairs,
           read_pairs_job,
           resume_pairs,
           start_pairs,
)

__all__ = ["Candidate", "CandidateRow", "CandidatesScan", "PairsJobView", "PairsPlan", "pairs_job_dirs", "plan_pairs",
           "read_candidates", "read_pairs_job", "resume_pairs", "scan_candidates", "start_pairs"]
