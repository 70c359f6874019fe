"""What outlives a process: the per-user data folder and the stage output cache.

A layer between ``status`` and ``engine``: it imports only ``errors`` and ``status``; the
engine imports it. Third-party helpers (joblib) are imported when first used, so
``import stagewidget`` stays fast.
"""
