"""hallq: queue management for public service halls.

The shared core: the wire contract (topics, payloads), the MQTT session and the hall
configuration. Edge agents and the coordinator meet only through what this package defines.
"""

__version__ = "0.1.0"
