"""The pure engine: an in-process bus that feeds events to every core on event time.

Offline replay and the live worker both run this same code; only the clock and the I/O around
it differ. Nothing in this package reads a clock, touches the network or writes a file.
"""
