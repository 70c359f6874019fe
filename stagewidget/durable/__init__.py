"""What outlives a process: the data folder, the run history and the stage output cache.

A layer of its own between ``status`` and ``engine``: it imports only ``errors`` and
``status``, and the engine imports it (to record runs, read expected durations, and
load and store cached stage outputs). Third-party helpers (joblib) are imported when
first used, so ``import stagewidget`` stays fast.
"""
