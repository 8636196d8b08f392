"""seglit: a PyTorch Lightning plugin for semantic-segmentation research."""

__version__ = "0.1.0"

IGNORE_INDEX = 255
"""Label value of void pixels: dropped from the loss and from every metric."""
