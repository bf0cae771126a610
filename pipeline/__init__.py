"""fieldcal: calibration-dataset management for post-training quantization (QNN/SNPE style)."""

__version__ = "0.1.0"
