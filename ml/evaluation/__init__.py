"""Evaluation of a candidate: metrics, baselines, the leaderboard and gate, and plots."""
