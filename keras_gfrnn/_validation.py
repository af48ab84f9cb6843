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


def check_seed(seed):
    """A dropout seed: None or an integer in [0, 2**32)."""
    # Keras' seeds are uint32 on JAX: a seed outside [0, 2**32) works on
    # one backend and fails late on another.
    if seed is not None and (
        isinstance(seed, bool)
        or not isinstance(seed, numbers.Integral)
        or not 0 <= seed < 2**32
    ):
        raise ValueError(
            "Argument `seed` must be None or an integer in [0, 2**32). "
            f"Received: seed={seed!r}"
        )
    return None if seed is None else int(seed)
