"""The application: settings, wiring, scheduler and CLI."""
