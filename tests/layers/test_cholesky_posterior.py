import numpy as np
import pytest
from keras import ops

import kerasvae
from tests.helpers import run_layer_serialization_test


def test_outputs_a_valid_cholesky_factor():
    layer = kerasvae.CholeskyPosterior(4)
    z_mean, tril = layer(np.random.randn(6, 10).astype("float32"))
    tril = ops.convert_to_numpy(tril).astype("float64")
    assert tuple(z_mean.shape) == (6, 4) and tril.shape == (6, 4, 4)
    np.testing.assert_array_equal(np.triu(tril, 1), 0.0)
    assert np.all(np.diagonal(tril, axis1=-2, axis2=-1) >= layer.min_diagonal)
    assert np.any(np.tril(tril, -1) != 0.0)  # correlations are possible
    np.linalg.cholesky(tril @ np.swapaxes(tril, -1, -2))  # positive definite


def test_bad_arguments_echo_the_value():
    with pytest.raises(ValueError, match="latent_dim=-2"):
        kerasvae.CholeskyPosterior(-2)
    with pytest.raises(ValueError, match="min_diagonal=0"):
        kerasvae.CholeskyPosterior(2, min_diagonal=0)


def test_serialization():
    revived = run_layer_serialization_test(kerasvae.CholeskyPosterior(3, min_diagonal=1e-3))
    assert revived.latent_dim == 3 and revived.min_diagonal == 1e-3
