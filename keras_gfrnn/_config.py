"""The initializer / regularizer / constraint arguments shared by layers."""

import keras

_MODULES = {
    "initializer": keras.initializers,
    "regularizer": keras.regularizers,
    "constraint": keras.constraints,
}
WEIGHT_OPTIONS = tuple(
    f"{group}_{kind}"
    for kind in _MODULES
    for group in ("kernel", "recurrent", "bias")
)


def resolve_weight_options(**options):
    """`keras.<kind>s.get` of each option, e.g. "l2" -> an L2 object."""
    return {
        name: _MODULES[name.split("_")[-1]].get(value)
        for name, value in options.items()
    }


def serialize_weight_options(source):
    """The serialized value of every option, read from `source` (an object
    with the options as attributes, or a dict)."""
    get = source.get if isinstance(source, dict) else source.__getattribute__
    return {
        name: _MODULES[name.split("_")[-1]].serialize(get(name))
        for name in WEIGHT_OPTIONS
    }
