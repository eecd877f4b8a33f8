import jax
import keras


class JAXSteps:
    """Stateless `train_step`/`test_step` for Keras on JAX.

    Follows the Keras JAX trainer's contract: the step receives the model's
    state as arrays and returns `(logs, new_state)`. The model's loss method is
    run inside a `keras.StatelessScope`, so it reads the given arrays instead
    of the variables and its variable updates (the sampler's seed state) come
    back as new non-trainable values.
    """

    def _stateless_losses(
        self, trainable_values, non_trainable_values, x, y, sample_weight, training, optimizer_values=None
    ):
        mapping = list(zip(self.trainable_variables, trainable_values)) + list(
            zip(self.non_trainable_variables, non_trainable_values)
        )
        with keras.StatelessScope(state_mapping=mapping) as scope:
            losses = self.compute_vae_losses(x, y, sample_weight=sample_weight, training=training)
        new_non_trainable = [scope.get_current_value(v) for v in self.non_trainable_variables]
        # Differentiate the family's surrogate objective when it has one.
        loss = losses.pop("objective", losses["loss"])
        if optimizer_values is not None:
            # A LossScaleOptimizer (mixed_float16) divides the gradients by its
            # current scale, read from the optimizer state: scale to match.
            with keras.StatelessScope(
                state_mapping=list(zip(self.optimizer.variables, optimizer_values))
            ):
                loss = self.optimizer.scale_loss(loss)
        return loss, (losses, new_non_trainable)

    def _stateless_update_trackers(self, metrics_values, losses):
        logs, new_values, start = {}, [], 0
        for tracker in self.metrics:
            count = len(tracker.variables)
            values = tracker.stateless_update_state(
                metrics_values[start : start + count], losses[tracker.name]
            )
            logs[tracker.name] = tracker.stateless_result(values)
            new_values.extend(values)
            start += count
        return logs, new_values

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_values, metrics_values = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        grad_fn = jax.value_and_grad(self._stateless_losses, has_aux=True)
        (_, (losses, non_trainable)), grads = grad_fn(
            trainable, non_trainable, x, y, sample_weight, True, optimizer_values
        )
        trainable, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, grads, trainable
        )
        logs, metrics_values = self._stateless_update_trackers(metrics_values, losses)
        return logs, (trainable, non_trainable, optimizer_values, metrics_values)

    def test_step(self, state, data):
        trainable, non_trainable, metrics_values = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        _, (losses, non_trainable) = self._stateless_losses(
            trainable, non_trainable, x, y, sample_weight, False
        )
        logs, metrics_values = self._stateless_update_trackers(metrics_values, losses)
        return logs, (trainable, non_trainable, metrics_values)
