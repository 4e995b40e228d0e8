"""Synthetic camera scenes with ground truth (issue #5)."""
