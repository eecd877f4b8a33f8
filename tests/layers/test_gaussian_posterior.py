import numpy as np
import pytest
from keras import ops

import kerasvae
from tests.helpers import run_layer_serialization_test


def test_outputs_mean_and_log_variance_of_latent_dim():
    z_mean, z_log_var = kerasvae.GaussianPosterior(5)(np.random.rand(3, 8).astype("float32"))
    assert tuple(z_mean.shape) == tuple(z_log_var.shape) == (3, 5)


def test_clamp_bounds_the_log_variance():
    layer = kerasvae.GaussianPosterior(4, log_var_min=-1.0, log_var_max=0.5, kernel_initializer="ones")
    _, z_log_var = layer(100.0 * np.random.randn(16, 8).astype("float32"))
    values = ops.convert_to_numpy(z_log_var)
    assert values.min() >= -1.0 and values.max() <= 0.5
    assert values.min() == -1.0 or values.max() == 0.5  # the clamp was active


def test_bad_arguments_echo_the_value():
    with pytest.raises(ValueError, match="latent_dim=0"):
        kerasvae.GaussianPosterior(0)
    with pytest.raises(ValueError, match="log_var_min=2.0, log_var_max=1.0"):
        kerasvae.GaussianPosterior(2, log_var_min=2.0, log_var_max=1.0)


def test_serialization():
    revived = run_layer_serialization_test(kerasvae.GaussianPosterior(3, log_var_min=-8.0))
    assert revived.latent_dim == 3 and revived.log_var_min == -8.0
