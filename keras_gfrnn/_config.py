"""The activation / initializer / regularizer / constraint arguments shared
by layers: resolved with Keras' own `get` (strings, dicts, Keras objects,
plain functions and custom objects, registered or not) and serialized with
Keras' own `serialize`, so configs are the ones Keras' layers write."""

import keras

_MODULES = {
    "initializer": keras.initializers,
    "regularizer": keras.regularizers,
    "constraint": keras.constraints,
}
_KINDS = {**_MODULES, "activation": keras.activations}
WEIGHT_OPTIONS = tuple(
    f"{group}_{kind}"
    for kind in _MODULES
    for group in ("kernel", "recurrent", "bias")
)


def _module(name):
    return _KINDS[name.split("_")[-1]]


def resolve_option(name, value):
    """`keras.<kind>s.get(value)` for the argument `name` (its kind is the
    last word: "recurrent_activation" -> `keras.activations`), with an
    error that names the argument."""
    try:
        return _module(name).get(value)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Argument `{name}` could not be interpreted ({error}). "
            f"Received: {name}={value!r}"
        ) from error


def serialize_option(name, value):
    """`keras.<kind>s.serialize(value)` for the argument `name`."""
    return _module(name).serialize(value)


def resolve_weight_options(**options):
    """`keras.<kind>s.get` of each option, e.g. "l2" -> an L2 object."""
    return {
        name: resolve_option(name, value) for name, value in options.items()
    }


def serialize_weight_options(source):
    """The serialized value of every option, read from `source` (an object
    with the options as attributes, or a dict)."""
    get = source.get if isinstance(source, dict) else source.__getattribute__
    return {name: serialize_option(name, get(name)) for name in WEIGHT_OPTIONS}
