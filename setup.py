"""setuptools shim: only here because cffi's build hook (`cffi_modules`) is a setup() keyword.

All metadata lives in pyproject.toml. The cffi module is the cgroup stats reader
(native/np_reader.c → stats.cgroups._reader), compiled by `pip install` / `pip install -e .`.
"""
from setuptools import setup

setup(cffi_modules=["native/build_reader.py:ffibuilder"])
