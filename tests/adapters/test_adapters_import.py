"""The adapters are optional: nothing of them (nor their libraries) loads until used."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import stagewidget as sw
from stagewidget.adapters._base import numbers_of


def test_import_stagewidget_loads_no_adapter_and_no_library() -> None:
    code = (
        "import sys, stagewidget as sw\n"
        "libs = ('stagewidget.adapters', 'optuna', 'keras', 'transformers', 'lightning',"
        " 'sklearn', 'torch', 'jax')\n"
        "assert not [m for m in libs if m in sys.modules], [m for m in libs if m in sys.modules]\n"
        "sw.adapters\n"
        "assert 'stagewidget.adapters' in sys.modules and 'optuna' not in sys.modules\n"
        "assert sw.adapters.optuna.ProgressCallback and 'optuna' in sys.modules\n"
        "assert 'keras' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_adapter_is_a_clear_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'tensorflow'"):
        sw.adapters.tensorflow  # noqa: B018


def test_numbers_of_keeps_scalars_of_any_array_library_and_drops_the_rest() -> None:
    values = {"loss": np.float32(0.5), "step": np.int64(3), "acc": np.array(0.25),
              "one": np.array([2.0]), "many": np.array([1.0, 2.0]), "name": "adam", "text": "3",
              "flag": True, "none": None, 7: 1.5}
    assert numbers_of(values) == {"loss": 0.5, "step": 3, "acc": 0.25, "one": 2.0, "7": 1.5}
    assert isinstance(numbers_of(values)["step"], int)
