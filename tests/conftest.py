"""Shared fixtures: the demo checkpoint (built once per run), loaded through the real loading path."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# journals, settings and personas of tests never land in the user's own folders
os.environ.setdefault("OMNIDESK_DATA_DIR", tempfile.mkdtemp(prefix="omnidesk-test-data-"))
os.environ.setdefault("OMNIDESK_CONFIG_DIR", tempfile.mkdtemp(prefix="omnidesk-test-config-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model.demo import build_demo_checkpoint

    return build_demo_checkpoint(tmp_path_factory.mktemp("demo") / "checkpoint")


@pytest.fixture(scope="session")
def demo_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model.demo import build_demo_checkpoint

    return build_demo_checkpoint(tmp_path_factory.mktemp("demo-text") / "checkpoint", with_talker=False)


@pytest.fixture(scope="session")
def demo(demo_dir: Path):
    from model.loading import load_model

    return load_model(str(demo_dir), device="cpu")
