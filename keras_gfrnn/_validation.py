"""Argument checks shared by the layers: fail early, name the argument."""

import numbers


def check_positive_int(name, value, shown=None):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value <= 0
    ):
        shown = value if shown is None else shown
        raise ValueError(
            f"Argument `{name}` must be a positive integer. "
            f"Received: {name}={shown!r}"
        )
    return int(value)


def check_rate(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= value < 1.0
    ):
        raise ValueError(
            f"Argument `{name}` must be a float in [0, 1). "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_choice(name, value, choices):
    try:
        known = value in choices
    except TypeError:  # unhashable, e.g. a list
        known = False
    if not known:
        raise ValueError(
            f"Argument `{name}` must be one of {sorted(choices)}. "
            f"Received: {name}={value!r}"
        )
    return value


# The largest seed of every layer and data pipeline of the package, on
# every backend: the seeds all of Keras' backends hold (`SeedGenerator`
# keeps int32 on torch, uint32 on JAX, int64 on TensorFlow), so that a
# layer saved on one backend loads and draws on every other.
MAX_SEED = 2**31 - 1


def check_seed(seed):
    """A seed: None or an integer in [0, MAX_SEED], checked here rather
    than failing late (at the first dropout, or on another backend)."""
    if seed is not None and (
        isinstance(seed, bool)
        or not isinstance(seed, numbers.Integral)
        or not 0 <= seed <= MAX_SEED
    ):
        raise ValueError(
            f"Argument `seed` must be None or an integer in [0, {MAX_SEED}] "
            "(the seeds every Keras backend holds, so that a saved layer "
            f"loads on each). Received: seed={seed!r}"
        )
    return None if seed is None else int(seed)
