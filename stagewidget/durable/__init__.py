"""Durable parts: what outlives the process (the data folder, the run history database).

A layer of its own between ``status`` and ``engine``: it imports only ``errors`` and
``status``, and the engine imports it (to record runs and read expected durations).
"""
