"""The version of sendcost's methodology, published beside every figure."""

#: Bumped whenever a definition changes; published beside every figure.
METHODOLOGY_VERSION = "rpw-2024.1/sendcost-1"
