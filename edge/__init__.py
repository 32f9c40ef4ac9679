"""Edge agents that run on each Raspberry Pi and wire devices to the bus."""
