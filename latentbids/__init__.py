"""latentbids: gray-matter autoencoders and their interpretation, as a BIDS App."""

__version__ = "0.1.0"

__all__ = ["__version__"]
