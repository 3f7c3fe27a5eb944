"""cffi build script for the cgroup stats reader (API mode): `stats.cgroups._reader`.

setup.py lists it in `cffi_modules`, so `pip install -e .` (scripts/install.sh) compiles
native/np_reader.c into the extension. The cdef is the marked block of native/np_reader.h, so
the declarations exist once.
"""

from __future__ import annotations

import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))


def _cdef() -> str:
    with open(os.path.join(HERE, "np_reader.h")) as f:
        text = f.read()
    m = re.search(r"/\* CDEF-BEGIN \*/(.*)/\* CDEF-END \*/", text, re.DOTALL)
    if not m:
        raise RuntimeError("native/np_reader.h has no CDEF-BEGIN/CDEF-END block")
    # cffi's cdef has no preprocessor; its comments are fine but drop them for clarity.
    return re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.DOTALL)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "stats.cgroups._reader",
    '#include "np_reader.h"',
    # Relative to the project root: setup.py runs from there (absolute paths upset setuptools).
    sources=[os.path.relpath(os.path.join(HERE, "np_reader.c"))],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
