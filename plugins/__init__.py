"""The built-in algorithms of metabench, shipped as plugins that use only the public API."""
