"""The request desk on the worker side: rendering, notifications and command handlers."""
