"""The signatures of `kerasvae.export` and how their tensors travel.

The wire-format knowledge both clients share (input dtypes, which inputs are
scalars, the name of a lone output that REST answers leave out) lives in
`SIGNATURES` and nowhere else. It describes SavedModel signatures only: no
model class is imported, so the clients can talk to any server.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class _Input:
    name: str
    dtype: str
    # Scalars have no batch axis, so the REST row format cannot carry them.
    scalar: bool = False


@dataclasses.dataclass(frozen=True)
class _Signature:
    inputs: tuple
    # TF Serving drops the name of a lone output in REST answers.
    single_output: str = None
    output_dtype: str = "float32"


_X = _Input("x", "float32")
SIGNATURES = {
    "encode": _Signature((_X,)),
    "decode": _Signature((_Input("z", "float32"),)),
    "reconstruct": _Signature((_X,), single_output="reconstruction"),
    "sample": _Signature((_Input("num_samples", "int32", scalar=True),)),
    "sample_seeded": _Signature(
        (_Input("num_samples", "int32", scalar=True), _Input("seed", "int64", scalar=True))
    ),
    "serving_default": _Signature((_X,), single_output="reconstruction"),
    "elbo": _Signature((_X,)),
    "prior_log_prob": _Signature((_Input("z", "float32"),), single_output="log_prob"),
}

# Conditional exports add `label` to every signature that reads x, and take it
# in place of `num_samples` in `sample` and `sample_seeded` (one draw per label).
LABEL = _Input("label", "int64")


def _as_array(value, dtype, name):
    array = np.asarray(value)
    if np.dtype(dtype).kind in "iu":
        # A float would be truncated without a word: refuse it instead.
        if array.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer ({dtype}). Received: {name}={value!r}")
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError(f"{name} does not fit in {dtype}. Received: {name}={value!r}")
        return array.astype(dtype)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must be numeric ({dtype}). Received an array of dtype {array.dtype}"
        )
    return array.astype(dtype, copy=False)


def prepare_inputs(signature_name, inputs):
    """`{name: value}` -> `{name: np.ndarray}` in the dtypes the export expects.

    Names and shapes are left to the server, which reports them with its own
    message; only dtypes are fixed here, because gRPC sends them as they are.
    """
    if not isinstance(inputs, dict) or not inputs:
        raise TypeError(
            "inputs must be a non-empty dict {input name: array}. "
            f"Received: {type(inputs).__name__}"
        )
    known = SIGNATURES.get(signature_name)
    dtypes = {i.name: i.dtype for i in known.inputs} if known else {}
    if known:
        dtypes.setdefault(LABEL.name, LABEL.dtype)
    return {
        name: _as_array(value, dtypes[name], name) if name in dtypes else np.asarray(value)
        for name, value in inputs.items()
    }


def has_scalar_inputs(signature_name, arrays):
    known = SIGNATURES.get(signature_name)
    if known is not None and any(i.scalar for i in known.inputs):
        return True
    return any(a.ndim == 0 for a in arrays.values())


class SignatureMethods:
    """One method per kerasvae signature, shared by both clients.

    Each returns the signature's full output dict, as `predict` does. A
    client implements `_call(signature_name, inputs)` and `close()`.
    """

    def encode(self, x, label=None):
        """`x` (batch, *data_shape) -> `{"z_mean", "z_log_var" or "scale_tril"}`."""
        return self._call("encode", _with_label({"x": x}, label))

    def decode(self, z, label=None):
        """`z` (batch, latent_dim) -> the likelihood's outputs (`probabilities`, `logits`)."""
        return self._call("decode", _with_label({"z": z}, label))

    def reconstruct(self, x, label=None):
        """`x` -> `{"reconstruction"}`, decoded from the posterior mean."""
        return self._call("reconstruct", _with_label({"x": x}, label))

    def sample(self, num_samples=None, labels=None):
        """`num_samples` draws from the prior -> `{"samples", "z"}` (different each call).

        A conditional export takes `labels` instead: one draw per label.
        """
        return self._call("sample", _sample_inputs(num_samples, labels))

    def sample_seeded(self, num_samples=None, seed=0, labels=None):
        """Like `sample`, but the same `seed` gives the same samples."""
        return self._call("sample_seeded", {**_sample_inputs(num_samples, labels), "seed": seed})

    def elbo(self, x, label=None):
        """`x` -> `{"negative_elbo", "reconstruction_loss", "kl_loss"}` per example.

        One fixed-seed posterior draw, so the same x always gets the same score
        (usable as an anomaly score).
        """
        return self._call("elbo", _with_label({"x": x}, label))

    def prior_log_prob(self, z):
        """`z` (batch, latent_dim) -> `{"log_prob"}`, log p(z) under the model's prior."""
        return self._call("prior_log_prob", {"z": z})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _with_label(inputs, label):
    if label is not None:
        inputs[LABEL.name] = label
    return inputs


def _sample_inputs(num_samples, labels):
    if (num_samples is None) == (labels is None):
        raise TypeError(
            "Pass num_samples (unconditional export) or labels (conditional export), "
            f"not both or neither. Received: num_samples={num_samples!r}, labels={labels!r}"
        )
    if labels is not None:
        return {LABEL.name: labels}
    return {"num_samples": num_samples}
