"""Running qjm: the command line, the demo, metrics, progress bars and the processes tests and benches start."""
