"""nanorepro: compact, tested PyTorch reproductions of ten recent ML systems."""

__version__ = "0.1.0"
