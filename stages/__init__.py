"""The pipeline's stages, one module each, and the helpers they share."""

import os

# TensorFlow's C++ start-up chatter (oneDNN notices, CPU feature lines) buries the stage output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
