"""Prints a line on stdout and one on stderr, then exits with the code given as argv[1]."""

import sys

print("about to exit", flush=True)
print("a line on stderr", file=sys.stderr, flush=True)
sys.exit(int(sys.argv[1]))
