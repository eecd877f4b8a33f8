"""Concurrent `sample_seeded` calls each get exactly their seeded result.

`sample_seeded` draws with stateless random ops, so requests in flight at the
same time share no random state. Eight threads, started together, call it with
different `(num_samples, seed)` pairs, through `tf.saved_model.load` and
through a stand-in server with each client; every answer must equal, bit for
bit, the answer of a serial call with the same pair.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.serving.common import direct

pytestmark = pytest.mark.requires_tensorflow

THREADS = 8
CALLS_PER_THREAD = 3
# Two threads per pair: equal requests in flight together, and unequal ones.
PAIRS = [(16, 3), (16, 4), (5, 3), (9, 2**40)]


def run_together(call):
    """Runs `call(pair)` from THREADS threads released at once; returns (pair, outputs)."""
    start = threading.Barrier(THREADS)

    def worker(i):
        pair = PAIRS[i % len(PAIRS)]
        start.wait(timeout=60)
        return pair, [call(pair) for _ in range(CALLS_PER_THREAD)]

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(worker, range(THREADS)))


def assert_seeded(results, serial):
    for pair, outputs in results:
        for output in outputs:
            assert sorted(output) == sorted(serial[pair])
            for name, expected in serial[pair].items():
                np.testing.assert_array_equal(output[name], expected, err_msg=f"{pair} {name}")


@pytest.fixture(scope="module")
def serial(reference):
    answers = {
        pair: direct(reference, "sample_seeded", {"num_samples": pair[0], "seed": pair[1]})
        for pair in PAIRS
    }
    # Different seeds give different draws, so answers crossed between threads show.
    assert not np.allclose(answers[(16, 3)]["z"], answers[(16, 4)]["z"])
    return answers


def test_loaded_savedmodel_in_threads(reference, serial):
    results = run_together(
        lambda pair: direct(reference, "sample_seeded", {"num_samples": pair[0], "seed": pair[1]})
    )
    assert_seeded(results, serial)


def test_served_in_threads(client, serial):
    results = run_together(lambda pair: client.sample_seeded(*pair))
    assert_seeded(results, serial)
