"""Property-based bad input for the exported signatures of every family.

The signatures have two forms (kerasvae/export.py): unconditional and
conditional (with `label`); the per-family parts are the model's own methods,
which tests/test_export.py and the export goldens check for every family. So
a VAE and a ConditionalVAE are exported once each and loaded back as TF
Serving would load them; the cases call the loaded signatures with random
batch sizes (empty included), NaN/inf, wrong shapes, wrong dtypes,
out-of-range sample counts and wrong label counts. Each gives the model's own
result (compared with the Keras model) or an error naming what was received.
"""

import re

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests import families
from tests.helpers import to_numpy
from tests.properties import arrays, small, with_non_finite

pytestmark = pytest.mark.requires_tensorflow

FAMILIES = [f for f in families.available_families() if f in ("VAE", "ConditionalVAE")]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """`{family: (model, loaded SavedModel)}`, exported once for the module."""
    import keras
    import tensorflow as tf

    from kerasvae import export

    loaded = {}
    for name in FAMILIES:
        keras.utils.set_random_seed(0)
        model = families.build(name)
        path = export.export_saved_model(model, tmp_path_factory.mktemp(name))
        loaded[name] = (model, tf.saved_model.load(path))
    return loaded


def _call(saved, signature, **inputs):
    import tensorflow as tf

    return {k: v.numpy() for k, v in saved.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def _label_inputs(model, n):
    if model.num_classes is None:
        return {}, None
    labels = (np.arange(n) % model.num_classes).astype("int64")
    return {"label": labels}, labels


@pytest.mark.parametrize("name", FAMILIES)
@small(12)
@given(data=st.data(), n=st.integers(0, 5), corrupt=st.booleans())
def test_deterministic_signatures_match_the_model_row_by_row(exports, name, data, n, corrupt):
    model, saved = exports[name]
    x = data.draw(arrays((n,) + tuple(model.data_shape), 0.0, 1.0))
    bad = np.zeros(n, bool)
    if corrupt and n:
        flat, bad = with_non_finite(data.draw, x.reshape(n, -1))
        x = flat.reshape(x.shape)
    extra, labels = _label_inputs(model, n)
    reconstruction = _call(saved, "reconstruct", x=x, **extra)["reconstruction"]
    assert reconstruction.shape == x.shape
    clean = ~bad
    if clean.any():
        expected = to_numpy(model.reconstruct(x[clean], labels=None if labels is None else labels[clean]))
        np.testing.assert_allclose(reconstruction[clean], expected, rtol=1e-5, atol=1e-6)
    encoded = _call(saved, "encode", x=x, **extra)
    if clean.any():
        # Deterministic, so row by row: a corrupt row changes only its own.
        expected = model.encode_outputs(x[clean], None if labels is None else labels[clean])
        assert set(encoded) == set(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(encoded[key][clean], to_numpy(value), rtol=1e-5, atol=1e-6, err_msg=key)
    elbo = _call(saved, "elbo", x=x, **extra)
    for outputs in (encoded, elbo):
        for key, value in outputs.items():
            assert value.shape[0] == n, key
            assert np.all(np.isfinite(value.reshape(n, int(np.prod(value.shape[1:])))[clean])), key


@pytest.mark.parametrize("name", FAMILIES)
@small(12)
@given(
    n=st.integers(0, 3),
    shape=st.sampled_from([(16,), (4, 4), (4, 4, 2), (2, 2, 1), (4, 4, 1, 1)]),
    dtype=st.sampled_from(["float32", "float64", "int32"]),
)
def test_a_wrong_input_is_refused_naming_it(exports, name, n, shape, dtype):
    import tensorflow as tf

    model, saved = exports[name]
    x = np.zeros((n,) + shape, dtype)
    extra, _ = _label_inputs(model, n)
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError)) as info:
        _call(saved, "reconstruct", x=x, **extra)
    message = str(info.value)
    if dtype != "float32":
        # TensorFlow names the dtype it received (float64 as "double").
        assert {"float64": "double"}.get(dtype, dtype) in message, message
    else:
        received = ",".join(str(d) for d in (n,) + shape)
        assert "Received shape" in message and received in message, message


@pytest.mark.parametrize("name", FAMILIES)
@small(15)
@given(num_samples=st.one_of(st.integers(-3, 12), st.integers(9_990, 10_010), st.integers(-(2**31), 2**31 - 1)), seed=st.integers(-(2**63), 2**63 - 1))
def test_seeded_sampling_is_repeatable_or_names_the_count(exports, name, num_samples, seed):
    import tensorflow as tf

    from kerasvae.export import MAX_NUM_SAMPLES

    model, saved = exports[name]
    if model.num_classes is not None:
        num_samples = min(abs(num_samples), 50)
        labels = (np.arange(num_samples) % model.num_classes).astype("int64")
        inputs = {"label": labels, "seed": np.int64(seed)}
    else:
        inputs = {"num_samples": np.int32(num_samples), "seed": np.int64(seed)}
    if not 1 <= num_samples <= MAX_NUM_SAMPLES:
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            _call(saved, "sample_seeded", **inputs)
        # The value itself, not a digit that the range "[1, 10000]" also holds.
        assert re.search(rf"Received: num_samples=\] \[{num_samples}\]", str(info.value)), str(info.value)
        return
    first = _call(saved, "sample_seeded", **inputs)
    again = _call(saved, "sample_seeded", **inputs)
    assert first["samples"].shape == (num_samples,) + tuple(model.data_shape)
    assert np.all(np.isfinite(first["samples"]))
    np.testing.assert_array_equal(first["samples"], again["samples"])
    np.testing.assert_array_equal(first["z"], again["z"])


@pytest.mark.parametrize("name", FAMILIES)
@small(10)
@given(n=st.integers(0, 4), width=st.integers(1, 5))
def test_decode_and_prior_log_prob_check_the_latent_width(exports, name, n, width):
    import tensorflow as tf

    model, saved = exports[name]
    z = np.zeros((n, width), "float32")
    extra, _ = _label_inputs(model, n)
    if width == model.latent_dim:
        decoded = _call(saved, "decode", z=z, **extra)
        assert all(v.shape[0] == n for v in decoded.values())
        log_prob = _call(saved, "prior_log_prob", z=z)["log_prob"]
        np.testing.assert_allclose(log_prob, to_numpy(model.prior_log_prob(z)), rtol=1e-5, atol=1e-5)
        return
    for signature, inputs in (("decode", dict(z=z, **extra)), ("prior_log_prob", dict(z=z))):
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            _call(saved, signature, **inputs)
        assert f"{n},{width}" in str(info.value), signature


@pytest.mark.parametrize("name", [f for f in FAMILIES if f == "ConditionalVAE"])
@small(12)
@given(n=st.integers(1, 4), extra_labels=st.integers(-1, 2), bad_value=st.sampled_from([None, -1, 2, 3, 99]))
# The edges of [0, num_classes) every run, not by chance (a mutation run found
# `label <= num_classes` passing: one_hot(num_classes) is a silent all-zero code).
@example(n=1, extra_labels=0, bad_value=families.NUM_CLASSES)
@example(n=2, extra_labels=0, bad_value=families.NUM_CLASSES - 1)
@example(n=2, extra_labels=0, bad_value=-1)
def test_conditional_signatures_name_wrong_label_counts_and_values(exports, name, n, extra_labels, bad_value):
    import tensorflow as tf

    model, saved = exports[name]
    x = np.zeros((n,) + tuple(model.data_shape), "float32")
    labels = np.zeros(n + extra_labels, "int64")
    if bad_value is not None and len(labels):
        labels[-1] = bad_value
    if extra_labels == 0 and (bad_value is None or 0 <= bad_value < model.num_classes):
        assert _call(saved, "reconstruct", x=x, label=labels)["reconstruction"].shape == x.shape
        return
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _call(saved, "reconstruct", x=x, label=labels)
    message = str(info.value)
    assert "label" in message
