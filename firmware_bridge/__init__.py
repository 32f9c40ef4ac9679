"""Serial link to the hall's microcontroller devices: framing, polling, drivers."""
