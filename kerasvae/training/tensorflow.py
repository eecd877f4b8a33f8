import keras
import tensorflow as tf


def _step_logs(logs):
    """The step's logs, shaped so that Keras can reduce them across replicas.

    Under MultiWorkerMirroredStrategy Keras 3 reduces each log with
    `strategy.reduce(MEAN, value, axis=0)`, which fails on a scalar
    ("Invalid reduction dimension 0", tensorflow#72388); a one-element vector
    reduces to the mean over the replicas. The epoch logs are read from the
    trackers across all replicas, as on any strategy.
    """
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, (1,)) for name, value in logs.items()}
    return logs


class TensorFlowSteps:
    """`train_step`/`test_step` for Keras on TensorFlow (GradientTape).

    Under a `tf.distribute` strategy each replica runs the step on its slice
    of the global batch and the Keras optimizer sums the replicas' gradients
    (`all_reduce(SUM)` in `apply`). This step does not go through Keras's
    `compute_loss`, which would divide by `num_replicas_in_sync` itself, so
    it divides its per-replica mean loss once, here (tested against one
    device in tests/test_distributed.py).
    """

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            losses = self.compute_vae_losses(x, y, sample_weight=sample_weight, training=True)
            objective = losses.get("objective", losses["loss"])
            # Each replica's loss is the mean over its slice; the optimizer
            # sums the replicas' gradients, so divide by their number.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(objective / replicas)
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        return _step_logs(self.update_trackers(losses))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 (keras/src/backend/tensorflow/trainer.py) builds a model
        # under a strategy from one batch that it averages across replicas
        # with `strategy.reduce("MEAN", batch)`. Under
        # MultiWorkerMirroredStrategy that reduce fails on a nested batch such
        # as `(x, labels)` ("Attempt to convert a value (PerReplica...) to a
        # Tensor"). The build needs only shapes and dtypes: this replica's own
        # slice gives them, with no collective.
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None or iterator is None or data_batch is not None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            batch = next(batches)
            break

        def local(value):
            if isinstance(value, tf.distribute.DistributedValues):
                return strategy.experimental_local_results(value)[0]
            return value

        with strategy.scope():
            self._symbolic_build(data_batch=tf.nest.map_structure(local, batch))

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        losses = self.compute_vae_losses(x, y, sample_weight=sample_weight, training=False)
        return _step_logs(self.update_trackers(losses))
