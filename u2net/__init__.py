"""U²-Net salient object detection: one predictor, pure effects, thin front ends."""

__version__ = "0.1.0"
