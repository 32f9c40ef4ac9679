"""The wire contract's models by topic group; use them through :mod:`hallq.messages`."""
