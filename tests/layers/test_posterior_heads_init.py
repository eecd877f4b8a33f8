"""The posterior heads start from independent draws (one initializer per head)."""

import numpy as np
import pytest

import kerasvae
from tests.helpers import to_numpy


@pytest.mark.parametrize("initializer", ["glorot_uniform", "he_normal"])
def test_gaussian_heads_are_initialized_independently(initializer):
    layer = kerasvae.GaussianPosterior(4, kernel_initializer=initializer)
    z_mean, z_log_var = layer(np.random.default_rng(0).normal(size=(8, 16)).astype("float32"))
    mean_kernel = to_numpy(layer.mean_dense.kernel).ravel()
    log_var_kernel = to_numpy(layer.log_var_dense.kernel).ravel()
    # Two independent 64-entry draws: correlation near 0 (sd 0.125), not 1.
    assert abs(np.corrcoef(mean_kernel, log_var_kernel)[0, 1]) < 0.6
    assert not np.allclose(to_numpy(z_mean), to_numpy(z_log_var))


def test_cholesky_heads_are_initialized_independently():
    layer = kerasvae.CholeskyPosterior(4)
    layer.build((None, 16))
    mean_kernel = to_numpy(layer.mean_dense.kernel)
    tril_kernel = to_numpy(layer.tril_dense.kernel)
    # The same seed would give the same uniform stream, rescaled: the first
    # 64 entries of both kernels would be perfectly correlated.
    first = tril_kernel.ravel()[: mean_kernel.size]
    assert abs(np.corrcoef(mean_kernel.ravel(), first)[0, 1]) < 0.6
