"""Reports: tables and output formats for results."""
