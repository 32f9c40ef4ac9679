"""The city level: halls' event logs shipped to a central PostgreSQL, and what reads it.

Nothing here runs in a hall's coordinator or on a key press's path; psycopg (the ``city``
extra) is imported only when a city command runs.
"""
