"""Quantization: statistics observers, encoding math, encodings JSON, and simulation."""
