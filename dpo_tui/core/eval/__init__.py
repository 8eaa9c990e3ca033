"""Evaluation of tuned adapters against their base: report format, statistics, facts and the job folder."""
