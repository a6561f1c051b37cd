"""A yes or no said aloud to a tool that acts. While a question waits, the user's next spoken turn
is heard aside (the engine's out-of-band answer: the words of the turn, which never enter the
conversation) and taken as the answer when its words say yes or no, and only then: an action on
the user's desktop runs on an explicit yes they can see was heard, not on a model's reading of it.
Anything else asks again, and the buttons stay."""

from __future__ import annotations

import re

# The engine is asked for the words (as issue 16's transcription asks), and the app decides.
VOICE_ASK = "Transcribe the audio into text, in the language it was spoken."
SAY_YES_OR_NO = "Say yes or no, or press a button."

_YES = {
    "yes", "yeah", "yep", "yup", "sure", "ok", "okay", "go ahead", "do it", "please do", "allow",
    "oui", "ja", "si", "sí", "da", "sim", "はい", "是", "好", "对",
}  # fmt: skip
_NO = {
    "no", "nope", "nah", "don't do it", "don't run it", "do not run it", "stop", "cancel", "deny",
    "never", "not now",
    "non", "nein", "nee", "não", "nao", "いいえ", "不", "不要", "别",
}  # fmt: skip


def spoken_answer(words: str) -> bool | None:
    """True for a yes, False for a no, None when the words say neither or both."""
    text = " " + re.sub(r"[^\w'’\s]", " ", words.lower()).replace("’", "'") + " "
    text = re.sub(r"\s+", " ", text)
    said_no = any(f" {phrase} " in text for phrase in _NO)
    for phrase in sorted(_NO, key=len, reverse=True):  # "don't do it" holds no yes
        text = text.replace(f" {phrase} ", "  ")
    said_yes = any(f" {phrase} " in text for phrase in _YES)
    if said_yes == said_no:
        return None
    return said_yes


def asked_again(question: str, heard: str) -> str:
    """The question again, after words that were neither yes nor no."""
    shown = heard if len(heard) <= 60 else heard[:57] + "..."
    what = f"I heard “{shown}”." if shown else "I did not catch that."
    return f"{what} {question}"
