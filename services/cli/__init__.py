"""The ``infusion-monitor`` command line."""
