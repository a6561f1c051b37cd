"""How turns are written for the Thinker: the checkpoint's chat template, rendered one turn at a
time (the system prompt or the close of the last reply, the user turn, the assistant start), and
the processor's features of the turn's media."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from model.context import MEDIA_KEYS, Segment
from model.media_input import (
    VISION_CELL_PX,
    InputError,
    UserTurn,
    prepare_audio,
    prepare_image,
    prepare_video,
)
from model.model_parts import ModelParts
from model.tool_format import tool_response_text
from model.turn_features import turn_features


@dataclass(frozen=True)
class PromptFormat:
    """The chat template with this conversation's system prompt and frame budget."""

    parts: ModelParts
    system_prompt: str
    video_max_pixels: int

    def system_messages(self) -> list[dict[str, Any]]:
        return [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []

    def render_user(self, content: list[dict[str, Any]]) -> str:
        """The chat template's text for one user turn and the assistant start (placeholders unexpanded)."""
        processor, system = self.parts.processor, self.system_messages()
        rendered = processor.apply_chat_template(
            [*system, {"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        prefix = processor.apply_chat_template(system, tokenize=False) if system else ""
        if not rendered.startswith(prefix):
            raise RuntimeError("the chat template does not render turns one after another")
        return rendered[len(prefix) :]

    def lead_segments(self, context: list[Segment], unfed: list[int]) -> list[Segment]:
        """What comes before a user turn: the system prompt on the first, else the close of the
        last reply (`unfed`: its tokens not in the cache yet)."""
        system = self.system_messages()
        if not context and system:
            prefix = self.parts.processor.apply_chat_template(system, tokenize=False)
            ids = self.parts.tokenizer(prefix, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
            return [Segment(ids=ids, kind="system")]
        if context and context[-1].kind != "system":
            closing = self.parts.closing_ids
            closing = closing[1:] if unfed[-1:] == [self.parts.im_end_id] else closing
            return [Segment(ids=torch.tensor(unfed + closing, dtype=torch.long), kind="reply")]
        return []

    def turn_segments(self, turn: UserTurn, lead: list[Segment]) -> list[Segment]:
        """`lead`, then the user turn and the assistant start with the processor's features for its media."""
        content: list[dict[str, Any]] = []
        audio = images = videos = None
        video_kwargs: dict[str, Any] = {}
        if turn.audio is not None:
            audio = [prepare_audio(turn.audio, turn.audio_rate_hz)]
        if turn.video is not None:
            if audio is None:
                raise InputError("camera frames go with spoken audio; attach a snapshot image to typed text")
            frames, fps = prepare_video(turn.video, self.video_max_pixels)
            videos = [frames]
            content.append({"type": "video", "video": "camera"})
            video_kwargs = {
                "audio_from_video_indices": [0],
                "load_audio_from_video": True,
                "videos_kwargs": self.video_kwargs(fps),
            }
        elif audio is not None:
            content.append({"type": "audio", "audio": "turn.wav"})
        if turn.images:
            images = [prepare_image(image) for image in turn.images]
            content += [{"type": "image", "image": f"image{i}.png"} for i in range(len(images))]
        if turn.tool_results:
            content.append({"type": "text", "text": tool_response_text(turn.tool_results)})
        if turn.text.strip():
            content.append({"type": "text", "text": turn.text})
        inputs = self.parts.processor(
            text=[self.render_user(content)],
            audio=audio,
            images=images,
            videos=videos,
            return_tensors="pt",
            **video_kwargs,
        )
        media = {k: torch.as_tensor(inputs[k]) for k in MEDIA_KEYS if inputs.get(k) is not None}
        if audio is not None:
            media["input_features"] = self._audio_features(audio[0], media["input_features"])
        return [*lead, Segment(ids=inputs["input_ids"][0], kind="user", media=media)]

    def _audio_features(self, audio: np.ndarray, processed: torch.Tensor) -> torch.Tensor:
        """The turn's features floored window by window (`turn_features.py`), as the live prefill
        feeds them, in place of the processor's, floored by the whole turn."""
        extractor = self.parts.processor.feature_extractor
        features = turn_features(extractor, audio, self.parts.audio_window[0])
        if features.shape != processed.shape:
            shapes = f"{tuple(features.shape)} against the processor's {tuple(processed.shape)}"
            raise RuntimeError(f"audio features of shape {shapes}")
        return features.to(processed.dtype)

    def video_kwargs(self, fps: float) -> dict[str, Any]:
        """The video processor's options for camera frames already fitted to the budget."""
        return {
            "fps": fps,
            "do_sample_frames": False,
            "cap_pixels_per_frame": True,
            # Pixel bounds per frame: the frames are already within budget, keep them as they are.
            "size": {"shortest_edge": VISION_CELL_PX**2, "longest_edge": self.video_max_pixels},
        }
