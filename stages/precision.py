"""What `train.precision` means: Keras' dtype policy for training, and whether this machine has the units for it.

float32 is the study's precision. mixed_bfloat16 computes in bfloat16 and keeps every variable in
float32 (Keras' mixed precision); on CPUs with bfloat16 units (AMX, AVX512_BF16) and on GPUs it
trains two to three times faster, elsewhere it may be slower (docs/performance.md).
"""

import contextlib
from pathlib import Path

PRECISIONS = ("float32", "mixed_bfloat16")
# CPU flags of the units that compute bfloat16 products natively (AMX tiles, AVX-512 BF16 dot products).
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU's feature flags as Linux lists them; None where that cannot be read (another OS)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def slow_precision_warning(precision: str, flags: set[str] | None, has_gpu: bool) -> str | None:
    """One line when bfloat16 is asked of a CPU without bfloat16 units, where it may be slower than float32.

    Only a warning: training still runs, only its speed is at stake. Says nothing
    where the CPU's flags cannot be read or a GPU computes.
    """
    if precision == "float32" or has_gpu or flags is None or flags & set(BFLOAT16_CPU_FLAGS):
        return None
    return (
        f"train.precision is {precision}, but this CPU has no bfloat16 units (none of the flags "
        f"{', '.join(BFLOAT16_CPU_FLAGS)}): training may be slower than in float32 (docs/performance.md)"
    )


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy set to `name` for the models built inside, and put back after."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
