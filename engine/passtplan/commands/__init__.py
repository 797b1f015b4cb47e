"""One module per CLI command; `passtplan.cli` only wires them, importing each when it runs."""
