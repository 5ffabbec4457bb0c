"""One module per ``edge-mcepl`` subcommand; each exposes ``register(subparsers)``."""
