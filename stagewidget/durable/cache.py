"""The stage output cache: files in ``<home>/cache/``, one folder per pipeline.

A stage's output is stored under a key made of the pipeline's name, the stage's name, the
stage function's fingerprint (``durable.fingerprint``) and ``joblib.hash`` of the stage's
input. Only the stage's own code is in its key: editing an earlier stage changes that
stage's output, hence this stage's input and key, so later stages invalidate through
their input.

Files are written with ``joblib.dump`` (numpy arrays, also inside containers, are
written from their own buffers without a pickled copy; anything else is pickled) to a
temporary file renamed into place with ``os.replace``, so a reader (any process) sees
a whole file or none. The cache is kept under a size cap (``STAGEWIDGET_CACHE_MAX_BYTES``,
default 10 GB) by removing the least recently used files: a hit touches its file.
Several processes may read, write and evict at once: a file removed under a reader is a
miss, the same key written twice is the same output.

Nothing here stops a run: an output that cannot be stored, a file that cannot be read
and an input that cannot be hashed are warned about (``CacheWarning``) and the stage
runs, or the run goes on, uncached.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .fingerprint import stage_fingerprint
from .home import home_dir

__all__ = ["MAX_BYTES_ENV", "CacheKey", "CacheWarning", "StageCache", "clear_cache"]

_log = logging.getLogger("stagewidget")

MAX_BYTES_ENV = "STAGEWIDGET_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 10 * 1024**3
SUFFIX = ".joblib"
_STALE_TMP_S = 3600.0  # a temporary file this old was left by a process that died
_NO_INPUT = "stagewidget:no-input"


class CacheWarning(UserWarning):
    """A stage's output could not be cached or read back; the run went on without it."""


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Where one stage's output for one input is (or would be) stored."""

    pipeline: str
    stage: str
    path: Path


class StageCache:
    """Stage outputs on disk under ``path`` (default ``<home>/cache``), at most ``max_bytes``.

    Pass one as ``Pipeline(..., cache=StageCache(...))`` to choose the folder or cap;
    ``cache=True`` uses the default. All methods may be called from any thread or process.

    Args:
        path: the cache folder (created when first written).
        max_bytes: the size cap; None reads ``STAGEWIDGET_CACHE_MAX_BYTES`` (default 10 GB).

    Raises:
        ConfigError: ``max_bytes`` (or the environment variable) is not a positive integer.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 max_bytes: int | None = None) -> None:
        self.path = Path(path) if path is not None else home_dir() / "cache"
        self.max_bytes = _max_bytes(max_bytes)

    def __repr__(self) -> str:
        return f"StageCache({str(self.path)!r}, max_bytes={self.max_bytes})"

    def key(self, pipeline: str, stage: str, fn: Callable[..., Any], data: Any,
            *, no_input: object = None) -> CacheKey | None:
        """The key of ``stage``'s output for input ``data``; None (warned) if unhashable.

        ``no_input`` is the sentinel a first stage called without an argument gets.
        """
        try:
            input_hash = _NO_INPUT if data is no_input and no_input is not None \
                else _joblib_hash(data)
        except Exception as exc:  # joblib pickles the input to hash it
            warnings.warn(CacheWarning(
                f"stage {stage!r} of pipeline {pipeline!r} runs uncached: its input "
                f"({_a(data)}) cannot be hashed ({type(exc).__name__}: {exc})"
            ), stacklevel=2)
            return None
        try:
            fingerprint = stage_fingerprint(fn)
        except Exception as exc:  # pragma: no cover - values are hashed or typed; a bug
            warnings.warn(CacheWarning(
                f"stage {stage!r} of pipeline {pipeline!r} runs uncached: its code could "
                f"not be fingerprinted ({type(exc).__name__}: {exc})"), stacklevel=2)
            return None
        parts = "\0".join((pipeline, stage, fingerprint, input_hash))
        name = f"{_slug(stage)}-{hashlib.sha256(parts.encode()).hexdigest()[:40]}{SUFFIX}"
        return CacheKey(pipeline, stage, self.path / _pipeline_folder(pipeline) / name)

    def load(self, key: CacheKey) -> tuple[bool, Any]:
        """Return ``(True, output)`` on a hit (and touch it), ``(False, None)`` on a miss.

        A file that cannot be read (damaged, or its objects' classes no longer exist) is
        warned about, removed and counts as a miss.
        """
        import joblib  # a dependency; imported on use so that importing stagewidget stays fast

        try:
            output = joblib.load(key.path)
        except (FileNotFoundError, NotADirectoryError):  # never stored, or evicted
            return False, None
        except Exception as exc:
            warnings.warn(CacheWarning(
                f"stage {key.stage!r} of pipeline {key.pipeline!r} runs again: its cached "
                f"output {str(key.path)!r} could not be read ({type(exc).__name__}: {exc})"
            ), stacklevel=2)
            _remove(key.path)
            return False, None
        try:  # least recently used = oldest modification time
            os.utime(key.path)
        except OSError:  # evicted by another process meanwhile: we have the output
            pass
        return True, output

    def store(self, key: CacheKey, output: Any) -> bool:
        """Write ``output`` under ``key``, then evict down to the cap; return True if stored.

        Blocks for the time of the write. Never raises for the output or the disk: a
        pickling error, a full or read-only disk, an output larger than the cap are
        warned about (``CacheWarning``) and nothing is stored.
        """
        import joblib  # a dependency; imported on use so that importing stagewidget stays fast

        folder = key.path.parent
        tmp: str | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # our own unique name in the same folder (same file system: os.replace is atomic)
            tmp = str(folder / f".{key.path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                joblib.dump(output, file)
            size = os.path.getsize(tmp)
            if size > self.max_bytes:
                raise _TooBig(f"it is {size:,} bytes, over the cache's cap of "
                              f"{self.max_bytes:,} bytes ({MAX_BYTES_ENV})")
            os.replace(tmp, key.path)
            tmp = None
        except Exception as exc:
            why = str(exc) if isinstance(exc, _TooBig) else f"{type(exc).__name__}: {exc}"
            warnings.warn(CacheWarning(
                f"stage {key.stage!r} of pipeline {key.pipeline!r}: its output ("
                f"{_a(output)}) was not cached, the run goes on ({why})"
            ), stacklevel=2)
            return False
        finally:
            if tmp is not None:
                _remove(Path(tmp))
        self.evict()
        return True

    def evict(self) -> int:
        """Remove the least recently used files until the cache fits its cap.

        Also removes temporary files left by processes that died. Returns the bytes freed.
        """
        files, total = self._files()
        freed = 0
        for mtime, size, path in sorted(files):
            if total - freed <= self.max_bytes:
                break
            if _remove(path):
                _log.debug("cache: evicted %s (%d bytes, last used %s)", path, size, mtime)
            freed += size  # removed by us or by another process: gone either way
        return freed

    def clear(self, pipeline: str | None = None) -> int:
        """Remove every stored output (of ``pipeline`` only, if given); return the files removed."""
        folders = [self.path / _pipeline_folder(pipeline)] if pipeline is not None else \
            [p for p in _listdir(self.path) if p.is_dir()]
        removed = 0
        for folder in folders:
            for path in _listdir(folder):
                if path.name.endswith((SUFFIX, ".tmp")) and _remove(path):
                    removed += path.name.endswith(SUFFIX)
            try:
                folder.rmdir()
            except OSError:  # not empty (a file being written) or already gone
                pass
        return removed

    def size_bytes(self) -> int:
        """The bytes the cache's files take now."""
        return self._files()[1]

    def _files(self) -> tuple[list[tuple[float, int, Path]], int]:
        files: list[tuple[float, int, Path]] = []
        now = time.time()
        for folder in _listdir(self.path):
            for path in _listdir(folder):
                try:
                    stat = path.stat()
                except OSError:  # removed meanwhile
                    continue
                if path.name.endswith(SUFFIX):
                    files.append((stat.st_mtime, stat.st_size, path))
                elif path.name.endswith(".tmp") and now - stat.st_mtime > _STALE_TMP_S:
                    _remove(path)
        return files, sum(size for _, size, _ in files)


def clear_cache(pipeline: Any = None) -> int:
    """Remove the cached stage outputs in the default cache folder; return how many.

    Args:
        pipeline: a pipeline (or its name) to clear only its stages; None clears all.
    """
    name = getattr(pipeline, "name", pipeline)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError(f"clear_cache takes a pipeline, a pipeline name or None "
                          f"(got {pipeline!r})")
    return StageCache(max_bytes=DEFAULT_MAX_BYTES).clear(name)


class _TooBig(Exception):
    pass


def _max_bytes(given: int | None) -> int:
    if given is None:
        text = os.environ.get(MAX_BYTES_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_BYTES
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{MAX_BYTES_ENV} must be a positive integer number of bytes "
                              f"(got {text!r})") from None
        if value <= 0:
            raise ConfigError(f"{MAX_BYTES_ENV} must be a positive integer number of bytes "
                              f"(got {text!r})")
        return value
    if isinstance(given, bool) or not isinstance(given, int) or given <= 0:
        raise ConfigError(f"cache max_bytes must be a positive int (got {given!r})")
    return given


def _joblib_hash(value: object) -> str:
    import joblib  # a dependency; imported on use so that importing stagewidget stays fast

    # sha1 rather than joblib's default md5: about twice as fast on large arrays here
    # (50 vs 90 ms for 50 MB, python -m bench.cache); collisions are not a threat model
    return str(joblib.hash(value, hash_name="sha1"))


def _a(value: object) -> str:
    kind = type(value).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:40] or "x"


def _pipeline_folder(pipeline: str) -> str:
    """A folder name per pipeline: readable, and distinct for any two names."""
    return f"{_slug(pipeline)}-{hashlib.sha256(pipeline.encode()).hexdigest()[:12]}"


def _listdir(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:  # not created yet, or removed meanwhile
        return []


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:
        return False
    return True
