"""hepattn: reconstruction as set prediction with one encoder-decoder transformer."""

__version__ = "0.1.0"
