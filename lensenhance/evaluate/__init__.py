"""Scores of predictions against truths: metrics, calibration, posterior figures, plots."""
