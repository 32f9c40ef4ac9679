"""Queue coordinator: engine, dispatch core, event log (issue: coordinator)."""
