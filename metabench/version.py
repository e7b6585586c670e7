"""The package's version, in a leaf module: the environment record reads it without the package's
public names."""

__version__ = "0.1.0"
