"""Which CPU matrix kernels llama.cpp uses, and so whether a row's logits depend on the rows decoded beside it.

ggml's CPU backend (this project's portable AVX2 build) picks a matrix-multiply kernel by the number of rows in
a ``llama_decode`` step:

* weights repacked at load (``CPU_REPACK``: Q4_0, Q4_K, IQ4_NL on AVX2) use a matrix-vector kernel for one row
  and a matrix-matrix kernel for several;
* other K-quant weights (Q6_K, and tensors the repack leaves, such as Qwen2.5's tied output matrix, 151,936 x
  1,536) use a tiled kernel from 8 rows on (``ggml_tiled_min_batch``: "profitable at rows >= 8") and a plain
  dot product below.

The kernels add in different orders, so a row's logits change (by up to ~0.5 on Qwen2.5-Coder-1.5B, measured)
with how many rows step beside it, and a near tie flips a greedy reply. The tiled kernel is also why 8 Qwen rows
stepped slower than 4 on this 2-core machine (bench/eval_throughput.py, see the README).

* ``tiled_kernel_off()``: ``GGML_CPU_TILED_MM=0`` for the process, unless the user set it. ggml reads it once,
  at the first matrix product, so it must be set before any model computes.
* ``loading(llama_cpp, batch_invariant)``: around a model's load, the above and, with ``batch_invariant``,
  llama.cpp's ``use_extra_bufts`` off (llama-cpp-python's ``Llama`` has no argument for it). With the tiled
  kernel off as well, every product is one dot product per row whatever the batch:
  ``LlamaCpp(batch_invariant=True)``.

Does not handle: llamafile's kernels (compiled in; they serve F16, BF16, Q8_0, Q4_0, Q5_0 and IQ4_NL weights
for two rows or more, and whether they add as the one-row kernel does is not measured here), GPU backends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from .._errors import ConfigError

TILED = "GGML_CPU_TILED_MM"


def tiled_kernel_off(required: bool = False) -> None:
    """Turn ggml's tiled K-quant kernel off for this process, unless the user chose otherwise (``required``: a
    user's choice that keeps it on is an error)."""
    value = os.environ.setdefault(TILED, "0")
    forced = os.environ.get(f"{TILED}_FORCE", "0") == "1"
    if required and (value != "0" or forced):
        raise ConfigError(f"batch_invariant=True needs ggml's tiled kernel off, but {TILED}={value}"
                          + (f" and {TILED}_FORCE=1" if forced else "") + " is set",
                          hint=f"unset {TILED} (firsttoken sets it to 0), or use batch_invariant=False")


@contextlib.contextmanager
def loading(llama_cpp: Any, batch_invariant: bool) -> Iterator[None]:
    """Around a model's load: the tiled kernel off and, with ``batch_invariant``, weights not repacked
    (``use_extra_bufts`` off). ``Llama`` has no argument for it and takes its model parameters from
    ``llama_model_default_params()``, so that function is swapped for the load."""
    tiled_kernel_off(required=batch_invariant)
    if not batch_invariant:
        yield
        return
    module = llama_cpp.llama_cpp
    original = module.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = False
        return p

    module.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_model_default_params = original
