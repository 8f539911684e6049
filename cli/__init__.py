"""autotts.cli: the `autotts` command; one module per subcommand, each a thin layer over a package."""
