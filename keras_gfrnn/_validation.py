"""Argument checks shared by the layers: fail early, name the argument."""

import numbers

import keras


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


def max_seed():
    """The largest dropout seed this backend holds: Keras' seeds are uint32
    on JAX (TensorFlow takes more, kept to the same range so that a saved
    layer loads on either) and int32 on torch."""
    return 2**31 - 1 if keras.backend.backend() == "torch" else 2**32 - 1


def check_seed(seed):
    """A dropout seed: None or an integer in [0, max_seed()], checked here
    rather than failing late, at the first dropout."""
    limit = max_seed()
    if seed is not None and (
        isinstance(seed, bool)
        or not isinstance(seed, numbers.Integral)
        or not 0 <= seed <= limit
    ):
        raise ValueError(
            f"Argument `seed` must be None or an integer in [0, {limit}] "
            f"(the seeds the {keras.backend.backend()} backend holds). "
            f"Received: seed={seed!r}"
        )
    return None if seed is None else int(seed)
