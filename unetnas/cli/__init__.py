"""The command line: a thin table of typed functions, each calling one library function."""
