import keras
import numpy as np

from kerasvae.training import compiled


def test_compiled_function_draws_afresh_each_call_and_reads_current_weights():
    """The same draws as the uncompiled function, call after call; weights are read, not frozen."""
    weight = keras.Variable(np.ones((3,), "float32"))

    def make(seed):
        generator = keras.random.SeedGenerator(seed)

        def draw(x):
            return x * weight + keras.random.normal((2, 3), seed=generator)

        return draw, generator

    eager, _ = make(4)
    fast, generator = make(4)
    fast = compiled(fast, variables=[weight, generator.state])
    x = np.full((2, 3), 2.0, "float32")
    outputs = []
    for scale in (1.0, 1.0, -3.0):
        weight.assign(np.full((3,), scale, "float32"))
        expected = keras.ops.convert_to_numpy(eager(x))
        got = keras.ops.convert_to_numpy(fast(x))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
        outputs.append(got)
    # Fresh noise per call: the first two calls share weights but not draws.
    assert not np.allclose(outputs[0], outputs[1])
    # The new weight is seen: x * -3 shifts every value by -8 from x * 1.
    np.testing.assert_allclose(outputs[2].mean(), outputs[1].mean() - 8.0, atol=2.0)
