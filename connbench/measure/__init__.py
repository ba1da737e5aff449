"""Measurement: load engines, the server-side sampler, faults, calibration."""
