"""What every service shell shares: settings, logging, NATS setup, the embedded server, clocks."""
