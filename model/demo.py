"""The demo model: a tiny, randomly initialised Qwen3-Omni saved as a real checkpoint directory.

Built from config with transformers' own classes, keeping the real special token ids and the shape
rules that tie the parts together (DESIGN.md, "Model facts"), so every code path that loads and
streams the real checkpoint runs on it: the app uses it when no weights are on disk, the tests use
it everywhere. Its words and its speech are noise, but its speech is loud enough to hear.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REFERENCE_DEFAULTS = {
    "im_start_token_id": 151644,
    "im_end_token_id": 151645,
    "system_token_id": 8948,
    "user_token_id": 872,
    "assistant_token_id": 77091,
    "tts_pad_token_id": 151671,
    "tts_bos_token_id": 151672,
    "tts_eos_token_id": 151673,
}
MEDIA_TOKEN_IDS = {
    "audio_token_id": 151675,
    "audio_start_token_id": 151669,
    "audio_end_token_id": 151670,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
}
VOCAB_SIZE = 152064
CODEBOOK_SIZE = 2048
THINKER_HIDDEN = 64
TALKER_HIDDEN = 64  # multiples of 64 keep bitsandbytes' CPU 4-bit kernels on their exact path
HEAD_DIM = 16
MROPE_SECTION = [2, 3, 3]  # sums to HEAD_DIM / 2
DEMO_SEED = 1234
TARGET_RMS_DBFS = -20.0
# Random replies never reach an end token: the demo bounds them instead (about 6 s of speech).
DEMO_MAX_TEXT_TOKENS = 48
DEMO_MAX_CODEC_FRAMES = 75
MARKER_FILE = "omnidesk_demo.json"


def demo_config_dict(*, with_talker: bool = True) -> dict[str, Any]:
    """The demo's config as a plain dict, in the layout of the real checkpoint's config.json."""
    rope = {
        "rope_type": "default",
        "rope_theta": 1_000_000,
        "mrope_section": MROPE_SECTION,
        "interleaved": True,
    }
    thinker_text = {
        "hidden_size": THINKER_HIDDEN, "intermediate_size": 128, "moe_intermediate_size": 64,
        "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": HEAD_DIM,
        "num_experts": 8, "num_experts_per_tok": 2, "decoder_sparse_step": 1, "mlp_only_layers": [],
        "norm_topk_prob": True, "vocab_size": VOCAB_SIZE, "max_position_embeddings": 65536,
        "rms_norm_eps": 1e-6, "use_qk_norm": True, "tie_word_embeddings": False,
        "rope_parameters": {**rope, "mrope_interleaved": True},
    }  # fmt: skip
    audio = {
        "d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 64,
        "num_mel_bins": 128, "output_dim": THINKER_HIDDEN, "downsample_hidden_size": 16,
        "n_window": 50, "n_window_infer": 800, "conv_chunksize": 500, "max_source_positions": 1500,
    }  # fmt: skip
    vision = {
        "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
        "out_hidden_size": THINKER_HIDDEN, "patch_size": 16, "spatial_patch_size": 16,
        "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3,
        "num_position_embeddings": 2304, "deepstack_visual_indexes": [0, 1], "tokens_per_second": 2,
        "apply_vit_abs_pos_embed": True,
    }  # fmt: skip
    thinker = {
        "text_config": thinker_text, "audio_config": audio, "vision_config": vision,
        "position_id_per_seconds": 13, "seconds_per_chunk": 2, "user_token_id": 872, **MEDIA_TOKEN_IDS,
    }  # fmt: skip
    config: dict[str, Any] = {
        "architectures": ["Qwen3OmniMoeForConditionalGeneration"],
        "model_type": "qwen3_omni_moe",
        "enable_audio_output": with_talker,
        "thinker_config": thinker,
        **REFERENCE_DEFAULTS,
    }
    if not with_talker:
        return config
    talker_text = {
        "hidden_size": TALKER_HIDDEN, "intermediate_size": 64, "moe_intermediate_size": 64,
        "shared_expert_intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": HEAD_DIM, "num_experts": 4, "num_experts_per_tok": 2,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True,
        "vocab_size": CODEBOOK_SIZE + 1024, "max_position_embeddings": 65536, "rms_norm_eps": 1e-6,
        "rope_parameters": rope,
    }  # fmt: skip
    code_predictor = {
        "hidden_size": TALKER_HIDDEN, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": HEAD_DIM,
        "vocab_size": CODEBOOK_SIZE, "num_code_groups": 16, "layer_types": ["full_attention"],
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000},
    }  # fmt: skip
    config["talker_config"] = {
        "text_config": talker_text, "code_predictor_config": code_predictor,
        "thinker_hidden_size": THINKER_HIDDEN, "accept_hidden_layer": 2, "num_code_groups": 16,
        "codec_pad_id": 2148, "codec_bos_id": 2149, "codec_eos_token_id": 2150, "codec_nothink_id": 2155,
        "codec_think_bos_id": 2156, "codec_think_eos_id": 2157,
        "speaker_id": {"ethan": 2302, "chelsie": 2301, "aiden": 2303},
        "position_id_per_seconds": 13, "seconds_per_chunk": 2, "spatial_merge_size": 2, **MEDIA_TOKEN_IDS,
    }  # fmt: skip
    config["code2wav_config"] = {
        "codebook_size": CODEBOOK_SIZE, "num_quantizers": 16, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 8, "num_attention_heads": 2, "num_key_value_heads": 2, "sliding_window": 72,
        "decoder_dim": 64, "upsample_rates": [8, 5, 4, 3], "upsampling_ratios": [2, 2],
        "max_position_embeddings": 8000, "layer_scale_initial_scale": 0.01, "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000},
    }  # fmt: skip
    return config


def _init_unset_experts(model: Any, seed: int) -> None:
    """transformers' `_init_weights` skips the Talker's fused experts, leaving whatever memory held:
    draw them like every other weight (normal, std `initializer_range`)."""
    import torch
    from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as omni

    gen = torch.Generator().manual_seed(seed + 1)
    std = model.config.talker_config.initializer_range
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, omni.Qwen3OmniMoeTalkerTextExperts):
                for weight in (module.gate_up_proj, module.down_proj):
                    weight.copy_(torch.randn(weight.shape, generator=gen) * std)


def _scale_to_audible(model: Any) -> float:
    """Scale Code2Wav's last convolution so random codes decode at TARGET_RMS_DBFS; returns the gain."""
    import torch

    code2wav = model.code2wav
    cfg = code2wav.config
    gen = torch.Generator().manual_seed(DEMO_SEED)
    codes = torch.randint(0, cfg.codebook_size, (1, cfg.num_quantizers, 50), generator=gen)
    with torch.inference_mode():
        rms = float(code2wav(codes).float().pow(2).mean().sqrt())
    gain = 10 ** (TARGET_RMS_DBFS / 20) / max(rms, 1e-12)
    last_conv = code2wav.decoder[-1].conv
    with torch.no_grad():
        last_conv.weight.mul_(gain)
        if last_conv.bias is not None:
            last_conv.bias.mul_(gain)
    return gain


def _build_processor(out_dir: Path) -> None:
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        Qwen3OmniMoeProcessor,
        WhisperFeatureExtractor,
    )

    from model.demo_tokenizer import CHAT_TEMPLATE, build_tokenizer

    build_tokenizer(out_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    processor = Qwen3OmniMoeProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16, temporal_patch_size=2, merge_size=2),
        video_processor=Qwen2VLVideoProcessor(patch_size=16, temporal_patch_size=2, merge_size=2),
        feature_extractor=WhisperFeatureExtractor(feature_size=128, sampling_rate=16000),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)


def build_demo_checkpoint(out_dir: Path, *, with_talker: bool = True, seed: int = DEMO_SEED) -> Path:
    """Build the demo model and save it (weights, config, processor files) into `out_dir`."""
    import torch
    from transformers import GenerationConfig, Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = Qwen3OmniMoeConfig(**demo_config_dict(with_talker=with_talker))
    model = Qwen3OmniMoeForConditionalGeneration(config).float().eval()
    _init_unset_experts(model, seed)
    gain = _scale_to_audible(model) if with_talker else 1.0
    model.generation_config = GenerationConfig(
        do_sample=True, temperature=0.7, top_p=0.8, top_k=20, max_new_tokens=DEMO_MAX_TEXT_TOKENS,
        eos_token_id=REFERENCE_DEFAULTS["im_end_token_id"], pad_token_id=151643,
    )  # fmt: skip
    model.save_pretrained(out_dir)
    _build_processor(out_dir)
    marker = {
        "demo": True,
        "version": demo_version(with_talker=with_talker),
        "seed": seed,
        "code2wav_gain": gain,
        "max_codec_frames": DEMO_MAX_CODEC_FRAMES,
    }
    (out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2))
    return out_dir


def demo_version(*, with_talker: bool = True) -> str:
    """A fingerprint of how the demo is built: a cached demo built otherwise is built again."""
    import hashlib

    recipe = json.dumps(
        [demo_config_dict(with_talker=with_talker), DEMO_SEED, TARGET_RMS_DBFS], sort_keys=True
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def is_demo_checkpoint(path: Path) -> bool:
    return (path / MARKER_FILE).is_file()


def demo_checkpoint_dir(*, with_talker: bool = True) -> Path:
    """The demo checkpoint in the user cache directory, built on first use."""
    import platformdirs

    root = Path(platformdirs.user_cache_dir("omnidesk")) / (
        "demo-model" if with_talker else "demo-model-text"
    )
    marker = root / MARKER_FILE
    current = marker.is_file() and json.loads(marker.read_text()).get("version") == demo_version(
        with_talker=with_talker
    )
    if not current or not (root / "config.json").is_file():
        tmp = root.with_name(root.name + ".partial")
        build_demo_checkpoint(tmp, with_talker=with_talker)
        if root.exists():
            import shutil

            shutil.rmtree(root)
        tmp.rename(root)
    return root
