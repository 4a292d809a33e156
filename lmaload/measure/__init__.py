"""Measurement: exact mergeable histograms, rate and lag accounting, results documents."""
