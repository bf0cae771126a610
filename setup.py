"""Builds the one compiled part of fieldcal, pipeline/native/_kernels.c (everything else is in
pyproject.toml). The kernels are plain C loaded with ctypes (pipeline/native/kernels.py); the flags
keep float arithmetic exactly as written: no fast-math, no fused multiply-add."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pipeline.native._kernels",
            sources=["pipeline/native/_kernels.c"],
            extra_compile_args=[
                "-O3",
                "-std=c11",
                "-fno-fast-math",
                "-ffp-contract=off",
                "-Wno-psabi",
            ],
        )
    ]
)
