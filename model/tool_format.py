"""Function calling in Qwen3-Omni's own (Hermes) format: tools declared in the system turn inside
`<tools></tools>`, calls emitted as `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, results
returned in a user turn inside `<tool_response></tool_response>` (the text the Qwen3 chat template
writes for `tools=` and `role: tool` messages). No torch here: the app and the server import it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

CALL_START = "<tool_call>"
CALL_END = "</tool_call>"
RESPONSE_START = "<tool_response>"
RESPONSE_END = "</tool_response>"

TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
    "<args-json-object>}\n</tool_call>"
)


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call: its name, what it does, its JSON Schema parameters, and
    whether it only reads (a tool that acts asks the user first; the model never sees this flag)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    read_only: bool = False

    def declaration(self) -> dict[str, Any]:
        """The OpenAI-style function declaration the chat template writes into `<tools>`."""
        function = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolResult:
    """A call's outcome as the model is told: the call it answers and the text of the result (an
    error is told in words, as a result)."""

    call_id: str
    name: str
    output: str


@dataclass(frozen=True)
class ParsedCall:
    """The text between `<tool_call>` and `</tool_call>`: `name` is empty when it is not the JSON
    object the format asks for, and `arguments` then holds the raw text."""

    name: str
    arguments: str


def system_prompt_with_tools(system_prompt: str, tools: tuple[ToolSpec, ...]) -> str:
    """The system turn's text with the tools declared after the prompt, as the template writes it."""
    if not tools:
        return system_prompt
    lines = "".join("\n" + json.dumps(tool.declaration(), ensure_ascii=False) for tool in tools)
    lead = system_prompt + "\n\n" if system_prompt else ""
    return lead + TOOLS_HEADER + lines + TOOLS_FOOTER


def tool_response_text(results: tuple[ToolResult, ...]) -> str:
    """The user turn's text that returns `results` (one `<tool_response>` block per call, in order)."""
    return "\n".join(f"{RESPONSE_START}\n{r.output}\n{RESPONSE_END}" for r in results)


def parse_call(text: str) -> ParsedCall:
    """One call's JSON (`{"name": ..., "arguments": {...}}`), or `ParsedCall("", text)` when malformed."""
    raw = text.strip()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return ParsedCall("", raw)
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        return ParsedCall("", raw)
    arguments = value.get("arguments", {})
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return ParsedCall("", raw)
    if not isinstance(arguments, dict):
        return ParsedCall("", raw)
    return ParsedCall(value["name"], json.dumps(arguments, ensure_ascii=False))


def call_token_ids(tokenizer: Any) -> tuple[int, int] | None:
    """The ids of `<tool_call>` and `</tool_call>` when each is one token of `tokenizer`, else None."""
    ids = tokenizer.convert_tokens_to_ids([CALL_START, CALL_END])
    unknown = getattr(tokenizer, "unk_token_id", None)
    if any(not isinstance(i, int) or i == unknown for i in ids):
        return None
    return int(ids[0]), int(ids[1])


class CallSplitter:
    """Parts a reply's tokens as they stream: those outside `<tool_call>...</tool_call>` are spoken
    and shown, those inside are the call, parsed when its closing token comes."""

    def __init__(self, start_id: int, end_id: int, decode: Any) -> None:
        self.start_id, self.end_id = start_id, end_id
        self.decode = decode  # token ids -> text
        self.inside: list[int] | None = None

    def push(self, token: int) -> tuple[bool, ParsedCall | None]:
        """Whether `token` belongs to what is said, and the call it completes (if it does)."""
        if self.inside is None:
            if token == self.start_id:
                self.inside = []
                return False, None
            return True, None
        if token == self.end_id:
            ids, self.inside = self.inside, None
            return False, parse_call(self.decode(ids))
        self.inside.append(token)
        return False, None

    def close(self) -> ParsedCall | None:
        """A call left open when the reply ended: malformed (its raw text kept)."""
        if self.inside is None:
            return None
        ids, self.inside = self.inside, None
        return ParsedCall("", self.decode(ids).strip())


def kept_of_cut_reply(
    ids: list[int], heard_tokens: int, markers: tuple[int, int] | None, eos_ids: frozenset[int]
) -> tuple[list[int], list[int]]:
    """What stays of a reply cut where the user stopped hearing it: the first `heard_tokens` of what
    was said, then its complete calls whole (a call the model made stays in its context, for the
    result that answers it; an unfinished one goes). Returns (kept ids, the spoken ones of them)."""
    said = [t for t in ids if t not in eos_ids]
    if markers is None or markers[0] not in said:
        return said[:heard_tokens], said[:heard_tokens]
    start_id, end_id = markers
    first = said.index(start_id)
    spoken = said[:first][:heard_tokens]
    ends = [i for i, t in enumerate(said) if t == end_id]
    calls = said[first : ends[-1] + 1] if ends and ends[-1] > first else []
    return spoken + calls, spoken


def call_text(name: str, arguments: str) -> str:
    """A call as the model writes it (a malformed one, `name` empty, as its raw text)."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        name = ""
    if not name:
        return f"{CALL_START}\n{arguments}\n{CALL_END}"
    body = json.dumps({"name": name, "arguments": value}, ensure_ascii=False)
    return f"{CALL_START}\n{body}\n{CALL_END}"
