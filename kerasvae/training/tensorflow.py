import keras
import tensorflow as tf


class TensorFlowSteps:
    """`train_step`/`test_step` for Keras on TensorFlow (GradientTape)."""

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            losses = self.compute_vae_losses(x, y, sample_weight=sample_weight, training=True)
            objective = losses.get("objective", losses["loss"])
            # Under tf.distribute each replica sees a slice of the global batch:
            # gradients are summed across replicas, so scale the mean loss down.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(objective / replicas)
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        return self.update_trackers(losses)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        losses = self.compute_vae_losses(x, y, sample_weight=sample_weight, training=False)
        return self.update_trackers(losses)
