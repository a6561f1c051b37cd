"""Loading from a folder or a hub id, with clear messages for every way it can fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from events import AudioChunk, TextDelta
from model.loading import ModelLoadError, load_model
from model.media_input import UserTurn
from model.sampling import SamplingPlan
from tests.engine_helpers import greedy_engine, run


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_demo_loads_through_the_real_path(demo) -> None:
    assert demo.is_demo and demo.has_talker
    assert (demo.device, demo.dtype, demo.quantization) == ("cpu", "float32", "none")
    tokenizer = demo.processor.tokenizer
    for token, token_id in {"<|im_start|>": 151644, "<|audio_pad|>": 151675, "<|image_pad|>": 151655}.items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id
    assert tokenizer("user")["input_ids"] == [872]


def test_missing_folder_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=f"{tmp_path / 'nope'}.*does not exist"):
        load_model(str(tmp_path / "nope"))


def test_hub_id_offline_says_what_to_do() -> None:
    with pytest.raises(
        ModelLoadError, match=r"'Qwen/Qwen3-Omni-30B-A3B-Instruct' is not on this computer.*--demo"
    ):
        load_model("instruct")


def test_broken_config_names_file_and_line(demo_dir: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(demo_dir, tmp_path / "broken")
    config = broken / "config.json"
    config.write_text(config.read_text()[:200])
    with pytest.raises(ModelLoadError, match=r"config.json is broken \(line \d+"):
        load_model(str(broken))


def test_missing_weights_say_the_download_is_incomplete(demo_dir: Path, tmp_path: Path) -> None:
    partial = copy_checkpoint(demo_dir, tmp_path / "partial")
    for weights in partial.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model(str(partial))


def test_text_only_checkpoint_streams_text_only(demo_text_dir: Path) -> None:
    loaded = load_model(str(demo_text_dir))
    assert not loaded.has_talker
    engine = greedy_engine(loaded)
    events = run(engine, UserTurn(text="hello"))
    assert any(isinstance(e, TextDelta) for e in events)
    assert not any(isinstance(e, AudioChunk) for e in events)


def test_sampling_defaults_come_from_the_checkpoint(demo) -> None:
    plan = SamplingPlan.from_generation_config(demo.model.generation_config)
    assert plan.thinker.do_sample and plan.thinker.temperature == 0.7 and plan.thinker.top_p == 0.8
    assert plan.talker.top_k == 50 and plan.talker.repetition_penalty == 1.05


def test_seeded_sampling_is_reproducible(demo) -> None:
    from model.engine import Engine, EngineSettings

    def reply(seed: int) -> list[int]:
        engine = Engine(
            demo.model, demo.processor, EngineSettings(seed=seed, max_text_tokens=8, max_codec_frames=4)
        )
        run(engine, UserTurn(text="hello"))
        return engine.last_reply_ids

    assert reply(1) == reply(1)
    assert reply(1) != reply(2)
