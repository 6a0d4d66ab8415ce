"""One module per command group; each exposes functions that ``cli.main`` registers on the typer app."""
