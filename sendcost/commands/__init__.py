"""One module per ``sendcost`` subcommand."""
