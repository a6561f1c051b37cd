"""Downloading a checkpoint from the Hugging Face hub: its size first, then the files, resumable.

`huggingface_hub` keeps partly downloaded files and resumes them, so a second run continues where
the first stopped. Progress is measured as bytes on disk in the target folder, which also counts
what an earlier, interrupted run left there.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from facts import MODEL_ALIASES


@dataclass(frozen=True)
class DownloadPlan:
    repo_id: str
    total_bytes: int
    cached_bytes: int
    files: int
    folder: Path  # where the bytes land (the hub cache's repo folder, or the chosen local folder)


def hub_id(source: str) -> str:
    return MODEL_ALIASES.get(source.lower(), source)


def cache_folder(repo_id: str) -> Path:
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")


def plan(source: str, local_dir: Path | None = None) -> DownloadPlan:
    """Ask the hub what the download is (needs the network)."""
    from huggingface_hub import snapshot_download

    repo_id = hub_id(source)
    infos = snapshot_download(repo_id, local_dir=local_dir, dry_run=True)
    total = sum(int(getattr(info, "file_size", 0) or 0) for info in infos)
    cached = sum(
        int(getattr(info, "file_size", 0) or 0) for info in infos if getattr(info, "is_cached", False)
    )
    return DownloadPlan(repo_id, total, cached, len(infos), local_dir or cache_folder(repo_id))


def download(source: str, local_dir: Path | None = None, *, terminal: bool = False) -> Path:
    """Fetch every file (resuming partial ones); returns the checkpoint folder."""
    from huggingface_hub import snapshot_download

    if not terminal:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    return Path(snapshot_download(hub_id(source), local_dir=local_dir))


def bytes_on_disk(folder: Path) -> int:
    """Bytes of regular files under `folder` (symlinks into the blob store are not counted twice)."""
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def download_cli(source: str) -> int:
    """`omnidesk --download ID`: size, then the files with the hub's own progress bars."""
    try:
        what = plan(source)
        print(
            f"{what.repo_id}: {what.files} files, {human_bytes(what.total_bytes)} "
            f"({human_bytes(what.cached_bytes)} already here); interrupted downloads resume."
        )
        path = download(source, terminal=True)
    except KeyboardInterrupt:
        print("\ndownload stopped; run the same command again to resume.", file=sys.stderr)
        return 130
    except Exception as error:
        print(f"omnidesk: could not download {hub_id(source)!r}: {error}", file=sys.stderr)
        return 1
    print(f"downloaded to {path}\nrun it with: omnidesk --model {source}")
    return 0


class DownloadJob:
    """A download on a daemon thread; the GUI polls `state`, `plan` and `done_bytes()`.

    Stopping abandons the thread (the hub library cannot be interrupted); what it fetched stays on
    disk and the next download resumes from it."""

    def __init__(self, source: str, local_dir: Path | None = None, *, plan_only: bool = False) -> None:
        import threading

        self.source = source
        self.local_dir = local_dir
        self.plan_only = plan_only  # only ask the hub for the size
        self.state = "planning"  # planning, downloading, planned, done, failed, stopped
        self.plan: DownloadPlan | None = None
        self.path: Path | None = None
        self.error = ""
        self._thread = threading.Thread(target=self._run, name="model-download", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.plan = plan(self.source, self.local_dir)
            if self.plan_only:
                self.state = "planned"
                return
            self.state = "downloading"
            path = download(self.source, self.local_dir)
        except Exception as error:
            if self.state != "stopped":
                self.error, self.state = f"{type(error).__name__}: {error}", "failed"
            return
        if self.state != "stopped":
            self.path, self.state = path, "done"

    def stop(self) -> None:
        self.state = "stopped"

    def done_bytes(self) -> int:
        return bytes_on_disk(self.plan.folder) if self.plan is not None else 0
