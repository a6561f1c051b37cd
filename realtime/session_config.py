"""The Realtime session's settings (`session.update`) and what they mean for our engine.

`instructions` is the system prompt, `audio.output.voice` the Talker's speaker, `output_modalities`
whether replies are spoken, `audio.input.transcription` whether a spoken turn's words come back
(`conversation.item.input_audio_transcription.completed`; null turns it off, an object on; the
model transcribes, in the language spoken, whatever the object names).
A new prompt starts a new conversation (it heads the KV cache). Turn
detection stays on the client (the app has its own, with echo cancellation), so the server reports
`turn_detection: null` and refuses server VAD.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from facts import VOICE_CHAT_PROMPT
from model.tool_format import ToolSpec
from realtime.wire import WIRE_RATE_HZ, WireError

PCM_FORMAT = {"type": "audio/pcm", "rate": WIRE_RATE_HZ}


@dataclass(frozen=True)
class SessionConfig:
    instructions: str
    voice: str
    speak: bool
    model: str
    transcribe: bool = True
    tools: tuple[ToolSpec, ...] = ()  # `tools`: the functions the model may call (the client runs them)

    @staticmethod
    def initial(host: Any) -> SessionConfig:
        voices = host.voices
        voice = "ethan" if "ethan" in voices or not voices else voices[0]
        return SessionConfig(VOICE_CHAT_PROMPT, voice, host.can_speak, str(host.info.get("source", "")))

    def engine_changes(self) -> dict[str, Any]:
        return {
            "system_prompt": self.instructions,
            "speaker": self.voice,
            "speak": self.speak,
            "transcribe": self.transcribe,
            "tools": self.tools,
        }

    def updated(self, session: Any, host: Any) -> SessionConfig:
        """This config with `session`'s changes, or WireError naming the field that cannot be used."""
        if not isinstance(session, dict):
            raise WireError("session.update needs a session object", param="session")
        if session.get("type", "realtime") != "realtime":
            raise WireError(
                "only realtime sessions are served (no transcription sessions)", param="session.type"
            )
        new = self
        if "instructions" in session:
            if not isinstance(session["instructions"], str):
                raise WireError("instructions must be a string", param="session.instructions")
            new = replace(new, instructions=session["instructions"])
        if "tools" in session:
            new = replace(new, tools=parse_tools(session["tools"]))
        if session.get("output_modalities") is not None:
            new = replace(new, speak=self.response_speaks(session["output_modalities"], host))
        audio = session.get("audio") or {}
        if not isinstance(audio, dict):
            raise WireError("audio must be an object", param="session.audio")
        output = audio.get("output") or {}
        input_ = audio.get("input") or {}
        for part, name in ((input_, "input"), (output, "output")):
            fmt = part.get("format") if isinstance(part, dict) else None
            if fmt is not None and (
                not isinstance(fmt, dict)
                or fmt.get("type", "audio/pcm") != "audio/pcm"
                or fmt.get("rate", WIRE_RATE_HZ) != WIRE_RATE_HZ
            ):
                raise WireError(
                    f"audio {name} format must be audio/pcm at {WIRE_RATE_HZ} Hz",
                    code="unsupported",
                    param=f"session.audio.{name}.format",
                )
        if isinstance(input_, dict) and input_.get("turn_detection") is not None:
            raise WireError(
                "server turn detection is not offered: commit each turn yourself",
                code="unsupported",
                param="session.audio.input.turn_detection",
            )
        if isinstance(input_, dict) and "transcription" in input_:
            transcription = input_["transcription"]
            if transcription is not None and not isinstance(transcription, dict):
                raise WireError(
                    "transcription must be an object or null", param="session.audio.input.transcription"
                )
            new = replace(new, transcribe=transcription is not None)
        voice = output.get("voice") if isinstance(output, dict) else None
        if isinstance(voice, dict):
            voice = voice.get("id")
        if voice is not None:
            if voice not in host.voices:
                choices = ", ".join(host.voices) or "none: this model answers in text"
                raise WireError(
                    f"unknown voice {voice!r}; voices: {choices}", param="session.audio.output.voice"
                )
            new = replace(new, voice=voice)
        return new

    def response_speaks(self, modalities: Any, host: Any) -> bool:
        """Whether a reply is spoken: ["audio"] (with its transcript) or ["text"]."""
        if modalities is None:
            return self.speak
        if modalities not in (["audio"], ["text"]):
            raise WireError('output_modalities must be ["audio"] or ["text"]', param="output_modalities")
        if modalities == ["audio"] and not host.can_speak:
            raise WireError("this model answers in text only", code="unsupported", param="output_modalities")
        return modalities == ["audio"]

    def json(self) -> dict[str, Any]:
        return {
            "type": "realtime",
            "object": "realtime.session",
            "model": self.model,
            "instructions": self.instructions,
            "output_modalities": ["audio"] if self.speak else ["text"],
            "tools": [tool_json(tool) for tool in self.tools],
            "audio": {
                "input": {
                    "format": PCM_FORMAT,
                    "turn_detection": None,
                    "transcription": {"model": self.model} if self.transcribe else None,
                },
                "output": {"format": PCM_FORMAT, "voice": self.voice},
            },
        }


def parse_tools(tools: Any) -> tuple[ToolSpec, ...]:
    """`session.tools` (function tools: name, description, parameters), or WireError naming the entry."""
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise WireError("tools must be a list", param="session.tools")
    specs: list[ToolSpec] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise WireError(
                "only function tools are supported", code="unsupported", param=f"session.tools[{i}]"
            )
        name, parameters = tool.get("name"), tool.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(name, str) or not name:
            raise WireError("a function tool needs a name", param=f"session.tools[{i}].name")
        if not isinstance(parameters, dict):
            raise WireError("parameters must be a JSON Schema object", param=f"session.tools[{i}].parameters")
        specs.append(ToolSpec(name, str(tool.get("description") or ""), parameters))
    return tuple(specs)


def tool_json(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
    }
