"""The `frgb` command line: a thin Typer layer over the `frgb` library."""
