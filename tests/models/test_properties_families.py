"""Property-based bad input for every family's fit, encode and sample.

Random batch sizes (empty included), shapes, dtypes, NaN/inf and label
counts: each call gives a correct result or a `ValueError` naming what was
received. One tiny model per family and test is reused across the cases.
`fit` checks its input in `VAE.fit` (shared by every family) and
`ConditionalVAE.fit` (labels), in NumPy before any backend step, so its cases
run on those two and on TensorFlow only (on JAX each new dtype or batch size
compiles the step anew); `encode` and `sample` are overridden by families and
run on all of them, on both backends.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import families
from tests.helpers import to_numpy
from tests.properties import arrays, assert_names, small, with_non_finite

FAMILIES = families.available_families()
# The two `fit` implementations (the others inherit VAE.fit).
FIT_FAMILIES = [f for f in FAMILIES if f in ("VAE", "ConditionalVAE")]
_MODELS = {}


def _model(name, test):
    """One compiled tiny model per (family, test), reused by every case."""
    import keras

    key = (name, test)
    if key not in _MODELS:
        keras.utils.set_random_seed(0)
        model = families.build(name)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        _MODELS[key] = model
    return _MODELS[key]


def test_every_family_has_a_row():
    missing = sorted(set(families.model_classes()) - set(families.BUILDERS))
    assert not missing, f"add a row for {missing} to tests/families.py"


def _labels(model, n, rng):
    return None if model.num_classes is None else rng.integers(0, model.num_classes, n)


BAD_X = ["ok", "ints", "bools", "non_finite", "wrong_shape", "strings", "complex", "out_of_range", "empty"]


def _make_x(draw, model, kind, n):
    shape = (n,) + tuple(model.data_shape)
    x = draw(arrays(shape, 0.0, 1.0))
    if kind == "ints":
        return np.round(x).astype("int32")
    if kind == "bools":
        return x > 0.5
    if kind == "non_finite":
        return with_non_finite(draw, x)[0]
    if kind == "wrong_shape":
        other = draw(st.sampled_from([(n, 16), (n, 4, 4), (n, 4, 4, 2), (n, 2, 2, 1)]))
        return draw(arrays(other, 0.0, 1.0))
    if kind == "strings":
        return np.full(shape, "a")
    if kind == "complex":
        return x.astype("complex64")
    if kind == "out_of_range":
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([-1.0, 2.0, 255.0]))
    return x


@pytest.mark.requires_tensorflow
@pytest.mark.parametrize("name", FIT_FAMILIES)
@small(12)
@given(data=st.data(), kind=st.sampled_from(BAD_X), n=st.integers(1, 6))
def test_fit_trains_on_valid_batches_and_names_what_is_wrong(name, data, kind, n):
    model = _model(name, "fit")
    if kind == "empty":
        n = 0
    elif kind in ("ok", "ints", "bools"):
        n = 4 * (1 + n % 2)  # whole batches of 4: one trace per dtype, not one per size
    x = _make_x(data.draw, model, kind, n)
    y = _labels(model, n, np.random.default_rng(n))
    if kind in ("ok", "ints", "bools"):
        history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        assert set(model.loss_keys) <= set(history.history)
        assert all(np.isfinite(v[-1]) for v in history.history.values())
        return
    with pytest.raises(ValueError) as info:
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    if kind == "non_finite":
        expected = "NaN or infinite"
    elif kind in ("wrong_shape", "empty"):
        expected = f"x.shape={x.shape}"
    elif kind in ("strings", "complex"):
        expected = f"x.dtype={x.dtype}"
    else:
        expected = f"[{float(np.min(x)):g}, {float(np.max(x)):g}]"
    assert_names(info.value, expected)


@pytest.mark.requires_tensorflow
@pytest.mark.parametrize("name", [f for f in FAMILIES if f == "ConditionalVAE"])
@small(12)
@given(data=st.data(), n=st.integers(1, 5), kind=st.sampled_from(["count", "range", "none", "float"]))
def test_fit_names_bad_labels(name, data, n, kind):
    model = _model(name, "labels")
    x = data.draw(arrays((n,) + tuple(model.data_shape), 0.0, 1.0))
    if kind == "count":
        y, expected = np.zeros(n + data.draw(st.sampled_from([-1, 1, 3])), "int64"), f"{n} example(s)"
    elif kind == "range":
        bad = data.draw(st.sampled_from([-1, model.num_classes, 99]))
        y, expected = np.full(n, bad), repr(bad)
    elif kind == "none":
        y, expected = None, "labels=None"
    else:
        y, expected = np.full(n, 0.5), "0.5"
    if kind == "count" and len(y) == 0:
        expected = "Received 0 labels"
    with pytest.raises(ValueError) as info:
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert_names(info.value, expected)


@pytest.mark.parametrize("name", FAMILIES)
@small(10)
@given(data=st.data(), n=st.integers(0, 5), kind=st.sampled_from(["clean", "corrupt", "wrong_shape"]))
def test_encode_gives_one_finite_row_per_clean_example_or_names_the_shape(name, data, n, kind):
    model = _model(name, "encode")
    labels = _labels(model, n, np.random.default_rng(0))
    if kind == "wrong_shape":
        shape = data.draw(st.sampled_from([(n, 16), (n, 4, 4), (n, 4, 4, 2), (n, 5, 4, 1)]))
        with pytest.raises(ValueError) as info:
            model.encode_outputs(np.zeros(shape, "float32"), labels)
        assert_names(info.value, f"x.shape={shape}")
        return
    x = data.draw(arrays((n,) + tuple(model.data_shape), 0.0, 1.0))
    bad = np.zeros(n, bool)
    if kind == "corrupt" and n:
        x, bad = with_non_finite(data.draw, x.reshape(n, -1))
        x, bad = x.reshape((n,) + tuple(model.data_shape)), bad.reshape(n)
    outputs = model.encode_outputs(x, labels)
    for key, value in outputs.items():
        value = to_numpy(value)
        assert value.shape[0] == n, key
        rows = value.reshape(n, int(np.prod(value.shape[1:])))
        assert np.all(np.isfinite(rows[~bad])), key  # one bad example spoils only its own row


NUM_SAMPLES = st.one_of(
    st.integers(-2, 6),
    st.integers(1, 4).map(np.int64),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=2),
    st.none(),
)


@pytest.mark.parametrize("name", FAMILIES)
@small(10)
@given(num_samples=NUM_SAMPLES, seed=st.integers(0, 2**31 - 1))
def test_sample_gives_repeatable_images_or_names_num_samples(name, num_samples, seed):
    model = _model(name, "sample")
    valid = isinstance(num_samples, (int, np.integer)) and not isinstance(num_samples, bool) and num_samples > 0
    labels = None
    if model.num_classes is not None and valid:
        labels = np.arange(int(num_samples)) % model.num_classes
    if not valid:
        with pytest.raises(ValueError) as info:
            model.sample(num_samples, seed=seed, labels=labels)
        assert_names(info.value, f"num_samples={num_samples!r}")
        return
    first = to_numpy(model.sample(num_samples, seed=seed, labels=labels))
    again = to_numpy(model.sample(num_samples, seed=seed, labels=labels))
    assert first.shape == (int(num_samples),) + tuple(model.data_shape)
    assert np.all(np.isfinite(first)) and np.all((first >= 0) & (first <= 1))  # Bernoulli means
    np.testing.assert_array_equal(first, again)
