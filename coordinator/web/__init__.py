"""The coordinator's web side: JSON API, live stream, ticket/hall/supervisor pages, bookings.

It runs in the coordinator's event loop (aiohttp), reads the engine directly and sends
supervisor commands through the same path as the window pads, so there is one writer of
the hall's state and one place where commands are logged and published.
"""
