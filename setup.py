"""setuptools shim: only here because cffi's build hook (`cffi_modules`) is a setup() keyword.

All metadata lives in pyproject.toml.
"""
from setuptools import setup

setup()
