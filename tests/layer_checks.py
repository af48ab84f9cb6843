"""Checks that every layer of the package must pass (shared by the tests)."""

import importlib.util
import json
import re

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()


def tensorflow_only(reason):
    """Skip a test off the TensorFlow backend, saying which TensorFlow-only
    feature it tests."""
    return pytest.mark.skipif(
        BACKEND != "tensorflow",
        reason=f"TensorFlow backend only: {reason}",
    )


def needs(modules, install):
    """Marks of a test that needs `modules`, which the README's test command
    does not install: the `extras` marker (CI runs these tests once the
    other backends are installed) and a skip, where one is missing, whose
    reason says what to install."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return [
        pytest.mark.extras,
        pytest.mark.skipif(
            bool(missing),
            reason=f"needs {' and '.join(missing)}: {install}",
        ),
    ]


def apply_marks(marks):
    """A decorator that applies each of `marks` (a list of pytest marks)."""

    def decorate(test):
        for mark in marks:
            test = mark(test)
        return test

    return decorate


SAVED_MODEL = pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="Keras exports a SavedModel from the TensorFlow and JAX backends",
)
TF_JIT_STEP = tensorflow_only(
    "`jit_compile=True` compiles the recurrent step with TensorFlow's XLA "
    "(JAX compiles the whole train step anyway; torch has no XLA step)"
)
TF_GRAPH = tensorflow_only(
    "a length unknown until run time exists only in a TensorFlow graph "
    "(tf.function with a None dimension); JAX and torch trace concrete shapes"
)


def gradients(layer, loss_of_outputs, *args, **kwargs):
    """Gradients of `loss_of_outputs(layer(*args, **kwargs))` with respect
    to `layer.trainable_variables`, as NumPy arrays (`None` where the
    backend reports no gradient), on whichever backend Keras runs."""
    variables = layer.trainable_variables
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of_outputs(layer(*args, **kwargs))
        grads = tape.gradient(loss, variables)
    elif BACKEND == "jax":
        import jax

        frozen = [v.value for v in layer.non_trainable_variables]

        def loss(trainable):
            outputs, _ = layer.stateless_call(
                trainable, frozen, *args, **kwargs
            )
            return loss_of_outputs(outputs)

        grads = jax.grad(loss)([v.value for v in variables])
    elif BACKEND == "torch":
        for v in variables:
            v.value.grad = None
        loss_of_outputs(layer(*args, **kwargs)).backward()
        grads = [v.value.grad for v in variables]
    else:
        raise NotImplementedError(f"No gradients on backend {BACKEND!r}")
    return [None if g is None else keras.ops.convert_to_numpy(g) for g in grads]


def assert_config_round_trip(layer):
    """get_config/from_config and JSON serialization give the same config."""
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    blob = json.dumps(keras.saving.serialize_keras_object(layer))
    revived = keras.saving.deserialize_keras_object(json.loads(blob))
    assert type(revived) is type(layer)
    assert revived.get_config() == config
    return clone


def assert_symbolic_matches_eager(make_layer, x):
    """The symbolic output shapes are the eager ones (None dims allowed)."""
    layer = make_layer()
    inputs = keras.Input(shape=(None,) + tuple(x.shape[2:]))
    symbolic = keras.tree.flatten(layer(inputs))
    eager = keras.tree.flatten(layer(x))
    assert len(symbolic) == len(eager)
    for s, e in zip(symbolic, eager):
        assert len(s.shape) == len(e.shape)
        for sd, ed in zip(s.shape, e.shape):
            assert sd is None or sd == ed, (s.shape, e.shape)


def assert_fit_lowers_loss(layer, x, y, steps=5, learning_rate=0.01):
    """A few optimizer steps on one batch lower the training loss."""
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    model.add(keras.layers.Dense(y.shape[-1]))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    before = float(model.evaluate(x, y, verbose=0))
    model.fit(x, y, epochs=steps, batch_size=len(x), verbose=0)
    after = float(model.evaluate(x, y, verbose=0))
    assert np.isfinite(after)
    assert after < before, (before, after)


def assert_mixed_precision(make_layer, x, policy, atol):
    """Under a mixed policy: float32 weights, low-precision outputs, close."""
    reference = make_layer()
    expected = keras.ops.convert_to_numpy(reference(x))
    keras.config.set_dtype_policy(policy)
    try:
        layer = make_layer()
        layer.build(x.shape)
        layer.set_weights(reference.get_weights())
        out = layer(x)
        assert (
            keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
        )
        for w in layer.weights:
            assert keras.backend.standardize_dtype(w.dtype) == "float32"
        got = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))
    finally:
        keras.config.set_dtype_policy("float32")
    np.testing.assert_allclose(got, expected, atol=atol)


def assert_saved_model_exact(model, path, inputs):
    """`model.export` + `tf.saved_model.load`: `serve` and the serving
    signature reproduce the model for every array in `inputs` (their
    batches and lengths differ: the export's are unknown): exactly on
    TensorFlow; from JAX, whose export runs the computation as one XLA
    program in TensorFlow (other kernels than JAX's own), to float32
    rounding (rtol 1e-5, atol 1e-6)."""
    import tensorflow as tf

    model.export(path, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(path)
    serve = reloaded.signatures["serving_default"]
    if BACKEND == "tensorflow":
        check = np.testing.assert_array_equal
    else:

        def check(got, expected):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    for x in inputs:
        expected = keras.ops.convert_to_numpy(model(x))
        check(reloaded.serve(x).numpy(), expected)
        served = list(serve(tf.constant(x)).values())[0].numpy()
        check(served, expected)


def xla_compiled_functions(layer, x):
    """The functions that `layer`, traced by `tf.function` on `x`, calls
    compiled with XLA (`tf.function(..., jit_compile=True)`), by Python
    name, once per call site (nested functions included). Read from the
    graph through TensorFlow's public graph API."""
    import tensorflow as tf

    spec = tf.TensorSpec(x.shape, x.dtype)
    concrete = tf.function(layer).get_concrete_function(spec)
    graph = concrete.graph.as_graph_def()
    nodes = list(graph.node)
    for function in graph.library.function:
        nodes.extend(function.node_def)
    return [
        re.sub(r"^__inference_(.*)_\d+$", r"\1", node.attr["f"].func.name)
        for node in nodes
        if "_XlaMustCompile" in node.attr and node.attr["_XlaMustCompile"].b
    ]


def assert_jit_matches(make_layer, x, compiled_functions, atol):
    """`jit_compile=True` gives the numbers of `jit_compile=False` (outputs
    and gradients, eagerly and inside a `tf.function`) and really compiles:
    the jitted layer `uses_xla` and its graph calls XLA-compiled functions,
    among them every name in `compiled_functions` (the plain one none)."""
    import tensorflow as tf

    results = []
    for jit in (False, True):
        layer = make_layer(jit)
        layer.build(x.shape)
        if results:
            layer.set_weights(results[0][0].get_weights())
        with tf.GradientTape() as tape:
            out = layer(x)
            loss = tf.reduce_sum(tf.square(out))
        grads = tape.gradient(loss, layer.trainable_variables)
        graph_out = tf.function(layer)(x)
        results.append((layer, out, grads, graph_out))
    (plain, out, grads, graph_out), (jitted, jout, jgrads, jgraph) = results
    assert jitted.uses_xla and not plain.uses_xla
    assert xla_compiled_functions(plain, x) == []
    compiled = xla_compiled_functions(jitted, x)
    assert compiled
    for name in compiled_functions:
        assert name in compiled, (name, compiled)
    np.testing.assert_allclose(jout, out, atol=atol)
    np.testing.assert_allclose(jgraph, graph_out, atol=atol)
    assert len(grads) == len(jgrads) > 0
    for g, jg in zip(grads, jgrads):
        # Kernel gradients sum over every step: on a 1026-step sequence they
        # reach ~1e3, where float32 holds ~6e-5, so also allow a relative
        # error of a few float32 roundings.
        np.testing.assert_allclose(jg, g, atol=10 * atol, rtol=1e-6)


def assert_one_input_mask_per_sequence(run, rate):
    """`run()` is a training call on inputs of ones of a layer set up so
    that every step outputs its input dropout mask (identity input kernel,
    no recurrence, linear activation), as `(batch, steps, units)`.

    Checks, for two calls: each output holds only 0 and `1 / (1 - rate)`,
    both, and at every step the same (one mask per sequence, as Keras'
    cells keep); the second call draws another mask."""
    first, second = run(), run()
    keep = 1.0 / (1.0 - rate)
    for out in (first, second):
        assert np.all(np.isclose(out, 0.0) | np.isclose(out, keep)), out
        assert 0.0 < np.mean(np.isclose(out, 0.0)) < 1.0
        np.testing.assert_allclose(out, np.broadcast_to(out[:, :1], out.shape))
    assert not np.allclose(first, second)


def assert_one_recurrent_mask_per_sequence(run, rate, gain):
    """`run()` is a training call on inputs of ones of a layer set up so
    that `h_t = 1 + gain * r * h_{t-1}` with r its recurrent dropout mask
    (identity input and recurrent kernels, linear activation, h_{-1} = 0),
    as `(batch, steps, units)`.

    Checks, for two calls: the mask recovered from the second step,
    `r = (h_1 - 1) / gain`, holds only 0 and `1 / (1 - rate)`, both, and
    gives every later step (one mask per sequence); the second call draws
    another mask."""
    masks = []
    keep = 1.0 / (1.0 - rate)
    for out in (run(), run()):
        np.testing.assert_allclose(out[:, 0], 1.0, rtol=1e-6)
        r = (out[:, 1] - 1.0) / gain
        assert np.all(np.isclose(r, 0.0) | np.isclose(r, keep)), r
        assert 0.0 < np.mean(np.isclose(r, 0.0)) < 1.0
        for t in range(2, out.shape[1]):
            np.testing.assert_allclose(
                out[:, t], 1.0 + gain * r * out[:, t - 1], rtol=1e-5
            )
        masks.append(r)
    assert not np.allclose(masks[0], masks[1])


def assert_fit_with_dropout(model, x, y):
    """`model.fit` trains with dropout (finite losses, weights moved) and
    the dropout seed generators advance: a fresh mask each step. (Give the
    layers a `seed`: on torch, unseeded dropout draws from torch's global
    generator and leaves the layer's as it is.)"""
    generators = [
        v for v in model.non_trainable_variables if "seed_generator" in v.path
    ]
    assert generators
    before = [np.array(v.numpy()) for v in generators]
    weights = [np.array(w) for w in model.get_weights()]
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    history = model.fit(x, y, batch_size=x.shape[0], epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert any(
        not np.allclose(a, b) for a, b in zip(weights, model.get_weights())
    )
    for variable, start in zip(generators, before):
        assert not np.array_equal(variable.numpy(), start), variable.path


def training_outputs_drawn_only_in_training(layer, call, keras_rnn=False):
    """`call(training)`'s outputs with `training=True`, checked against an
    inference call after it: they differ (dropout), and inference draws no
    mask (the seed generator stays), except for a cell in
    `keras.layers.RNN` (`keras_rnn`), whose masks Keras draws before every
    call."""
    trained = call(True)
    state = layer.cell.seed_generator.state
    start = keras.ops.convert_to_numpy(state)
    assert not np.allclose(trained, call(False))
    if not keras_rnn:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(state), start)
    return trained
