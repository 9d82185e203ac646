"""Import TensorFlow / TFDS quietly and without a GPU.

TFDS is imported by the builder and loader modules only; TensorFlow itself
only when a TFRecord data set has to be read with `tfds.load`. JAX owns the
accelerators, so TensorFlow is told to see none.
"""

from __future__ import annotations

import contextlib
import logging
import os

# Expected, harmless TFDS notices for our identity-named builder configs.
_QUIET_PREFIXES = ("Using custom data configuration", "Variant folder")


class _DropNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_QUIET_PREFIXES)


_quieted = False


def import_tfds():
    """Return the `tensorflow_datasets` module, with TF logs and progress bars quieted."""
    global _quieted
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow_datasets as tfds

    if not _quieted:
        logging.getLogger("absl").addFilter(_DropNotices())
        tfds.display_progress_bar(False)
        _quieted = True
    return tfds


def import_tensorflow():
    """Return `tensorflow`, hidden from GPUs and logging errors only."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    # Devices already initialised by an earlier import cannot be hidden; nothing to do then.
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices([], "GPU")
    tf.get_logger().setLevel("ERROR")
    return tf
