"""The training input stream: every image once per epoch, a new order each epoch, epoch k's order from (seed, k)."""

import math

import numpy as np

from stages import train


def epoch_orders(count: int, batch_size: int, seed: int, epochs: int, first_epoch: int = 0) -> list[list[int]]:
    """The image order of each epoch, read from the stream the way fit() reads it: steps_per_epoch batches."""
    # Each image's pixels hold its own index, so a batch tells which images it carries.
    images = np.arange(count, dtype=np.float32).reshape(count, 1, 1, 1) * np.ones((1, 2, 2, 1), np.float32)
    labels = np.eye(3, dtype=np.float32)[np.arange(count) % 3]
    stream = iter(train.training_batches({"x": images, "y": labels}, batch_size, seed, first_epoch=first_epoch))
    steps = math.ceil(count / batch_size)
    orders = []
    for _ in range(epochs):
        batches = [next(stream) for _ in range(steps)]
        for batch_images, batch_labels in batches:  # labels travel with their images
            indices = batch_images.numpy()[:, 0, 0, 0].astype(int)
            np.testing.assert_array_equal(batch_labels.numpy(), labels[indices])
        orders.append([int(index) for batch_images, _ in batches for index in batch_images.numpy()[:, 0, 0, 0]])
    return orders


def test_every_epoch_is_a_permutation_even_with_a_partial_last_batch():
    # 50 images in batches of 16: 3 full batches and one of 2, then the next epoch starts afresh.
    for order in epoch_orders(count=50, batch_size=16, seed=7, epochs=3):
        assert sorted(order) == list(range(50))


def test_epochs_are_reshuffled_and_the_orders_repeat_for_the_same_seed():
    first = epoch_orders(count=50, batch_size=16, seed=7, epochs=3)
    assert first[0] != first[1] and first[1] != first[2] and first[0] != first[2]
    assert epoch_orders(count=50, batch_size=16, seed=7, epochs=3) == first
    assert epoch_orders(count=50, batch_size=16, seed=8, epochs=3) != first


def test_a_stream_started_at_epoch_k_gives_the_orders_an_uninterrupted_one_gives_from_k():
    # What makes a resumed training identical: epoch k's order depends on (seed, k) only.
    uninterrupted = epoch_orders(count=50, batch_size=16, seed=7, epochs=4)
    assert epoch_orders(count=50, batch_size=16, seed=7, epochs=2, first_epoch=2) == uninterrupted[2:]


def test_validation_batches_keep_the_order_and_the_batch_size():
    images = np.arange(7, dtype=np.float32).reshape(7, 1, 1, 1)
    labels = np.eye(7, dtype=np.float32)
    batches = list(train.validation_batches({"x": images, "y": labels}, 3))
    assert [batch_images.numpy()[:, 0, 0, 0].tolist() for batch_images, _ in batches] == [[0, 1, 2], [3, 4, 5], [6]]
