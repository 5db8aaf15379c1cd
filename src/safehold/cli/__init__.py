"""The `safehold` command line. One module per command group."""
