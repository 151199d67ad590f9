"""The ``spacelm`` command line (typer + rich). Nothing imports this package."""
