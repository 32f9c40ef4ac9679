"""hallqctl: the operator's ``hallq`` command and the tools behind it.

The one package that wires every component together: the demo hall, ``doctor``,
``status``, ``config check``, the private test/demo brokers. Nothing imports it back
(``tests/test_layers.py`` holds that), so each component stays usable on its own.
"""
