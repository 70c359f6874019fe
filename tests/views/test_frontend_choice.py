"""Which view a run shows: the widget only inside a kernel with ipywidgets."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, check=False)


def test_plain_python_shows_the_text_view_on_stderr() -> None:
    done = run_python("""
        import stagewidget as sw
        print(sw.Pipeline("plain", [sw.Stage(lambda x: x * 2, name="double")]).run(21))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"
    assert "plain succeeded in" in done.stderr and "double" in done.stderr


def test_without_ipywidgets_a_kernel_falls_back_to_the_text_view() -> None:
    done = run_python("""
        import sys
        sys.modules["ipywidgets"] = None  # as if it were not installed
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.kernel = object()  # looks like a Jupyter kernel
        import stagewidget as sw
        from stagewidget.views.show import in_widget_frontend
        assert not in_widget_frontend()
        print(sw.Pipeline("nowidgets", [sw.Stage(lambda x: x, name="same")]).run(1))
    """)
    assert done.returncode == 0, done.stderr
    assert "ImportError" not in done.stderr and "ModuleNotFoundError" not in done.stderr
    assert "nowidgets succeeded in" in done.stderr


def test_terminal_ipython_is_not_a_widget_frontend() -> None:
    done = run_python("""
        from IPython.core.interactiveshell import InteractiveShell
        InteractiveShell.instance()
        from stagewidget.views.show import in_widget_frontend
        print(in_widget_frontend())
    """)
    assert done.stdout.strip() == "False", done.stderr
