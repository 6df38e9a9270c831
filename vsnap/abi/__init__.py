"""Linux x86-64 numbers and layouts, written out by hand.

The guest is always x86-64 Linux, whatever the host is, so these never come from the host's
`errno`, `os` or `signal` modules.
"""
