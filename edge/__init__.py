"""Edge agents that run on each Raspberry Pi and wire devices to the bus.

The agent is where the hall file meets the hardware: ``hall_devices`` turns its devices
into the plain values ``firmware_bridge`` and ``displays`` take; ``agent`` runs the
session, the links, the panels and the role's worker (``dispenser``, ``window``).
"""
