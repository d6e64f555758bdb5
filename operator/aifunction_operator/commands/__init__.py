"""The `aifn` subcommands, one module each."""
