"""One module per HTTP method (STYLE 2)."""
