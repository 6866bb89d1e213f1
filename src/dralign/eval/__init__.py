"""Evaluation: metrics, shift sweeps, plots, reports."""
