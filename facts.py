"""The facts every layer shares, defined once: sample rates, the codec frame, the voices, the voice
chat prompt, and the conversions between float and 16-bit samples. Plain values and functions,
importable anywhere (no Qt, no torch)."""

from __future__ import annotations

import numpy as np

SPEECH_IN_RATE_HZ = 16_000  # the microphone side: webrtcvad, the echo canceller, the audio encoder's features
SPEECH_OUT_RATE_HZ = 24_000  # Code2Wav's output, playback, and the Realtime protocol's only PCM rate
CODEC_FRAME_MS = 80
CODEC_FRAME_SAMPLES = SPEECH_OUT_RATE_HZ * CODEC_FRAME_MS // 1000  # one codec frame of speech: 1920

VOICES = ("ethan", "chelsie", "aiden")  # the Talker's speakers in the released checkpoints
MODEL_ALIASES = {
    "instruct": "Qwen/Qwen3-Omni-30B-A3B-Instruct",
    "thinking": "Qwen/Qwen3-Omni-30B-A3B-Thinking",
    "captioner": "Qwen/Qwen3-Omni-30B-A3B-Captioner",
}
DEMO_LABEL = "demo model: random weights, its speech is noise"

# Qwen3-Omni's README recommends this system prompt for voice chat.
VOICE_CHAT_PROMPT = (
    "You are a virtual voice assistant with no gender or age.\n"
    "You are communicating with the user.\n"
    "In user messages, “I/me/my/we/our” refer to the user and “you/your” refer to the assistant. In your "
    "replies, address the user as “you/your” and yourself as “I/me/my”; never mirror the user’s "
    "pronouns—always shift perspective. Keep original pronouns only in direct quotes; if a reference is "
    "unclear, ask a brief clarifying question.\n"
    "Interact with users using short(no more than 50 words), brief, straightforward language, maintaining "
    "a natural tone.\n"
    "Never use formal phrasing, mechanical expressions, bullet points, overly structured language. \n"
    "Your output must consist only of the spoken content you want the user to hear. \n"
    "Do not include any descriptions of actions, emotions, sounds, or voice changes. \n"
    "Do not use asterisks, brackets, parentheses, or any other symbols to indicate tone or actions. \n"
    "You must answer users' audio or text questions, do not directly describe the video content. \n"
    "You should communicate in the same language strictly as the user unless they request otherwise.\n"
    "When you are uncertain (e.g., you can't see/hear clearly, don't understand, or the user makes a "
    "comment rather than asking a question), use appropriate questions to guide the user to continue the "
    "conversation.\n"
    "Keep replies concise and conversational, as if talking face-to-face."
)
QUANTIZATIONS = ("auto", "none", "nf4")  # "auto": NF4 on a GPU, none on the CPU
DTYPES = ("auto", "bfloat16", "float16", "float32")

INT16_SCALE = 32768.0


def to_int16(samples: np.ndarray) -> np.ndarray:
    """int16 of float samples in [-1, 1] (rounded, clipped); integer samples are clipped as they are."""
    array = np.asarray(samples).reshape(-1)
    if np.issubdtype(array.dtype, np.floating):
        array = np.rint(array * 32767.0)
    return np.clip(array, -32768, 32767).astype(np.int16)


def to_float(samples: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1) of int16 samples; float samples are returned as float32."""
    array = np.asarray(samples)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / INT16_SCALE
    return array.astype(np.float32)
