"""An example metabench plugin package."""
