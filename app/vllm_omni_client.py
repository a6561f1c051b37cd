"""The app as a client of a vLLM-Omni server (`vllm serve Qwen/Qwen3-Omni-30B-A3B-Instruct --omni`),
for users whose model runs on bigger hardware than the desktop's.

Of vLLM-Omni 0.30.0's surfaces for Qwen3-Omni, only `POST /v1/chat/completions` with
`modalities: ["text", "audio"]` and `stream: true` carries what a conversation needs: the system
prompt, the voice (top-level `voice`), images, audio and the whole history; its `/v1/realtime` is
transcription-shaped by default and its duplex mode drops the voice. The server keeps no state,
so the history and its truncation live here (`ClientHistory`) and every turn sends it whole.
What the user gets there (README, "Engines"): no live prefill (the turn is sent when it ends), no
camera video (a snapshot image is sent), and interruption by closing the stream.
"""

from __future__ import annotations

import base64
import functools
import io
import logging
import queue
import threading
import time
import wave
from dataclasses import replace
from typing import Any

import numpy as np

from app.client_history import ClientHistory, Exchange
from app.engine_client import EngineSignals, LoadRequest, ModelInfo, SpeechOutput
from app.recording import Recording
from app.reply_feeder import ReplyFeeder
from app.vllm_omni_stream import chunk_audio, chunk_content, error_text, stream_chunks
from app.vllm_omni_tools import (
    StreamedCalls,
    answer_aside,
    flush_notice,
    speak_notice,
    tool_messages,
    tools_param,
)
from events import (
    AsideAnswer,
    AudioChunk,
    EngineConfigured,
    EngineError,
    EngineStatus,
    LoadCancelled,
    LoadFailed,
    Message,
    ModelLoaded,
    ReplyTruncated,
    TextDelta,
    TurnFinished,
    TurnStats,
)
from model.media_input import MODEL_AUDIO_RATE_HZ
from realtime.wire import SAMPLES_PER_FRAME, image_data_url, pcm16_bytes

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0


def wav_base64(audio: np.ndarray, rate_hz: int = MODEL_AUDIO_RATE_HZ) -> str:
    """The turn as a WAV file (vLLM-Omni decodes input audio by its container; raw PCM has none)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate_hz)
        out.writeframes(pcm16_bytes(audio))
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def user_content(exchange: Exchange) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    if exchange.audio is not None:
        content.append(
            {"type": "input_audio", "input_audio": {"data": wav_base64(exchange.audio), "format": "wav"}}
        )
    content += [
        {"type": "image_url", "image_url": {"url": image_data_url(np.asarray(i))}} for i in exchange.images
    ]
    if exchange.text:
        content.append({"type": "text", "text": exchange.text})
    return content


def kept_text(text: str, heard_samples: int, total_samples: int) -> str:
    """The part of a reply the user heard, by the share of its audio played, back to a word end."""
    if total_samples <= 0 or heard_samples >= total_samples:
        return text if heard_samples >= total_samples > 0 else ""
    cut = int(len(text) * heard_samples / total_samples)
    return text[:cut].rsplit(" ", 1)[0] if " " in text[:cut] else ""


class VllmOmniEngine:
    """`EngineClient` over vLLM-Omni's streamed chat completions (`url` is its API base, …/v1)."""

    def __init__(self, speech: SpeechOutput | None, *, url: str, api_key: str | None = None) -> None:
        import httpx

        self.signals = EngineSignals()
        self.recording = Recording()
        self.conversation = ClientHistory()
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(headers=headers, timeout=httpx.Timeout(60.0, connect=CONNECT_TIMEOUT_S))
        self.feeder = ReplyFeeder(self.signals.report)
        self.feeder.speech = speech
        self.model = ""
        self.voice = "ethan"
        self.prompt = ""
        self.speak = True
        self.tools: tuple[Any, ...] = ()
        self._called: dict[int, dict[str, Any]] = {}  # a turn's calls, until their results go back
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._cancelled: set[int] = set()
        self._streaming: dict[int, Any] = {}
        self._audio_of: dict[int, int] = {}
        self.notices_cut: set[int] = set()  # "still running" notices stopped
        self._thread = threading.Thread(target=self._run, name="vllm-omni", daemon=True)
        self._thread.start()

    # -- EngineClient ----------------------------------------------------------------------------

    def load(self, request: LoadRequest) -> None:
        self._jobs.put(("load", request))

    def cancel_load(self) -> None:
        self.signals.report(LoadCancelled())

    def respond(self, turn_id: int, turn: Any) -> None:
        self._jobs.put(("respond", turn_id, turn))

    def answer_aside(self, key: int, turn: Any) -> None:
        self._jobs.put(("aside", key, turn))

    def _aside(self, key: int, turn: Any) -> None:
        try:
            self.signals.report(AsideAnswer(key, answer_aside(self, turn)))
        except Exception as error:
            self.signals.report(AsideAnswer(key, "", f"vLLM-Omni at {self.url}: {_why(error)}"))

    def say_notice(self, key: int, request: str) -> None:
        """Say `request`'s answer out of the conversation (that a tool still runs)."""
        self._jobs.put(("notice", key, request))

    def cancel_notice(self, key: int) -> None:
        self.notices_cut.add(key)  # a notice streaming stops at its next chunk
        self.feeder.drop(-key)
        self._jobs.put(("unnotice", key))

    _notice, _unnotice = speak_notice, flush_notice  # the worker's jobs (app/vllm_omni_tools.py)

    def set_tools(self, tools: tuple[Any, ...]) -> None:
        """Sent with every request (`app/vllm_omni_tools.py`)."""
        self.tools = tuple(tools)

    def cancel(self, turn_id: int) -> None:
        """Stop reply `turn_id`: vLLM-Omni aborts a request whose stream is closed."""
        self._cancelled = {t for t in self._cancelled if t > turn_id - 64} | {turn_id}
        self.feeder.drop(turn_id)
        stream = self._streaming.get(turn_id)
        if stream is not None:
            threading.Thread(target=stream.close, name="vllm-omni-cancel", daemon=True).start()

    def cancel_all(self) -> None:
        for turn_id in list(self._streaming):
            self.cancel(turn_id)

    def truncate(self, turn_id: int, heard_samples: int) -> None:
        self._jobs.put(("truncate", turn_id, heard_samples))

    def configure(self, speaker: str, system_prompt: str) -> None:
        self._jobs.put(("configure", speaker, system_prompt))

    def new_conversation(self) -> None:
        self._jobs.put(("new_conversation",))

    def restore(self, exchanges: list[Any]) -> None:
        """A past conversation continued: kept here, sent with every request like the rest."""
        self._jobs.put(("restore", list(exchanges)))

    def _restore(self, exchanges: list[Any]) -> None:
        self.conversation.restore(exchanges)

    def listen(self, audio: Any, frames: Any = None, fps: float = 0.0) -> None:
        """No live prefill on this server: the turn goes whole when it ends."""

    def abandon(self) -> None:
        """Nothing was sent while the user spoke, so nothing to take back."""

    def speculate(self) -> None:
        """vLLM-Omni's protocol has no reply computed ahead: its reply starts at the turn's end."""

    def history(self) -> list[Message]:
        return self.conversation.messages()

    def set_speech(self, speech: SpeechOutput | None) -> None:
        self.feeder.speech = speech

    def stop(self, timeout_s: float = 5.0) -> bool:
        self.cancel_all()
        self._jobs.put(None)
        self._thread.join(timeout_s)
        self.feeder.stop()
        self.http.close()
        return True

    # -- the worker thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            kind, *args = job
            try:
                getattr(self, "_" + kind)(*args)
            except Exception:
                log.exception("vLLM-Omni client: %s failed", kind)

    def _load(self, request: LoadRequest) -> None:
        self.signals.report(EngineStatus(f"connecting to vLLM-Omni at {self.url}"))
        self.voice, self.prompt = request.speaker, request.system_prompt
        try:
            answer = self.http.get(f"{self.url}/models")
            answer.raise_for_status()
            self.model = str(answer.json()["data"][0]["id"])
        except Exception as error:
            self.signals.report(LoadFailed(f"cannot use the vLLM-Omni server at {self.url}: {_why(error)}"))
            return
        self.speak = request.speak
        info = ModelInfo(
            source=f"{self.model} (vLLM-Omni at {self.url})",
            path=self.url,
            device="remote",
            dtype="?",
            quantization="?",
            is_demo=False,
            can_speak=True,
            weight_bytes=0,
            load_s=0.0,
        )
        self.signals.report(ModelLoaded(info))

    def _configure(self, speaker: str, prompt: str) -> None:
        if prompt != self.prompt:
            self._new_conversation()
        self.voice, self.prompt = speaker, prompt
        self.signals.report(EngineConfigured(speaker, prompt))

    def _new_conversation(self) -> None:
        self.conversation.clear()
        self.recording.clear()

    def _truncate(self, turn_id: int, heard_samples: int) -> None:
        kept = kept_text(self.conversation.reply_text(turn_id), heard_samples, self._audio_of.get(turn_id, 0))
        self.conversation.cut(turn_id, kept)
        self.recording.cut(turn_id, heard_samples)
        self.signals.report(ReplyTruncated(turn_id, kept))

    def _request(self, turn: Any, turn_id: int) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.prompt}] if self.prompt else []
        going_on = bool(turn.tool_results)
        for exchange in self.conversation.answered():
            messages.append({"role": "user", "content": user_content(exchange)})
            if going_on and exchange.turn_id == turn_id:  # the reply that called, then the results
                messages += [self._called.pop(turn_id, {"role": "assistant", "content": exchange.reply})]
                messages += tool_messages(turn.tool_results)
            else:
                messages.append({"role": "assistant", "content": exchange.reply or ""})
        audio = None if turn.audio is None else np.asarray(turn.audio).reshape(-1)
        if not going_on or turn.images:  # a screenshot goes with the results as a user message
            messages.append(
                {"role": "user", "content": user_content(Exchange(0, turn.text, audio, tuple(turn.images)))}
            )
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "modalities": ["text", "audio"] if self.speak else ["text"],
            "stream_options": {"include_usage": True},
        }
        if self.speak:
            body |= {"voice": self.voice, "audio": {"format": "pcm16"}}
        if self.tools:
            body["tools"] = tools_param(self.tools)
        return body

    def _respond(self, turn_id: int, turn: Any) -> None:
        turn = turn() if callable(turn) else turn
        started = time.perf_counter()
        if turn_id in self._cancelled:  # cancelled before it began
            self.signals.report(
                TurnFinished(turn_id, TurnStats(started_s=started, finished_s=started, cancelled=True))
            )
            return
        body = self._request(turn, turn_id)
        audio = None if turn.audio is None else np.asarray(turn.audio).reshape(-1)
        reply = _Progress(started)
        if turn.tool_results:  # the same turn goes on after its calls
            reply.text.append(self.conversation.reply_text(turn_id))
        else:
            self.conversation.user(turn_id, turn.text, audio, tuple(turn.images))
        if audio is not None:
            self.recording.user(turn_id, audio)
        if self.speak:
            self.feeder.start_turn(turn_id)
        try:
            self._stream(turn_id, body, reply)
        except Exception as error:
            if turn_id not in self._cancelled:
                self.conversation.drop(turn_id)
                self.signals.report(EngineError(turn_id, f"vLLM-Omni at {self.url}: {_why(error)}"))
                return
        finally:
            self._streaming.pop(turn_id, None)
            if self.speak:
                self.feeder.finish_turn(turn_id)
        cancelled = turn_id in self._cancelled
        self._audio_of[turn_id] = reply.samples
        self.conversation.reply(turn_id, "".join(reply.text), interrupted=cancelled)
        calls = [] if cancelled else reply.calls.events(turn_id)
        if calls:
            self._called[turn_id] = reply.calls.assistant_message("".join(reply.text))
        for call in calls:
            self.signals.report(call)
        self.signals.report(TurnFinished(turn_id, replace(reply.stats(cancelled), tool_calls=len(calls))))

    def _stream(self, turn_id: int, body: dict[str, Any], reply: _Progress) -> None:
        """Read the SSE stream: text and audio chunks apart by their top-level `modality`."""
        opened = functools.partial(self._streaming.__setitem__, turn_id)  # cancel closes it
        for chunk in stream_chunks(self.http, self.url, body, opened):
            if turn_id in self._cancelled:
                return
            reply.usage = chunk.get("usage") or reply.usage
            choices = chunk.get("choices") or []
            reply.calls.push((choices[0].get("delta") or {}) if choices else {})
            audio = chunk_audio(chunk)
            if audio is not None:
                pcm, rate = audio
                self.recording.reply(turn_id, pcm)
                self.feeder.write(AudioChunk(turn_id, pcm, rate, reply.samples // SAMPLES_PER_FRAME))
                reply.samples += pcm.size
            elif content := chunk_content(chunk):
                reply.first_text_s = reply.first_text_s or time.perf_counter()
                reply.text.append(content)
                self.signals.report(TextDelta(turn_id, content))


class _Progress:
    """What one streamed reply has brought so far."""

    def __init__(self, started_s: float) -> None:
        self.started_s = started_s
        self.text: list[str] = []
        self.samples = 0
        self.first_text_s: float | None = None
        self.usage: dict[str, Any] = {}
        self.calls = StreamedCalls()

    def stats(self, cancelled: bool) -> TurnStats:
        return TurnStats(
            started_s=self.started_s,
            first_text_s=self.first_text_s,
            finished_s=time.perf_counter(),
            prompt_tokens=int(self.usage.get("prompt_tokens") or 0),
            text_tokens=int(self.usage.get("completion_tokens") or len(self.text)),
            audio_samples=self.samples,
            cancelled=cancelled,
        )


def _why(error: Exception) -> str:
    import httpx

    if isinstance(error, httpx.HTTPStatusError):
        return error_text(error.response.text, error.response.status_code)
    return f"{type(error).__name__}: {error}"
