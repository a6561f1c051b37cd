"""The journal's format and its reader: versioned files, one conversation a file, media kept beside
it, and journals cut by a crash, from an older app or from a newer one read without being changed."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.history_log import FORMAT_VERSION, HistoryLog, MediaItem, read_history
from app.journal import delete_conversation, list_conversations, load_conversation, search
from app.resume import EARLIER_SPOKEN, restore_plan


def write_journal(folder: Path, name: str, records: list[dict[str, Any]], tail: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8")
    return path


def exchange(turn_id: int, said: str, reply: str, at: float, **user: Any) -> list[dict[str, Any]]:
    return [
        {"kind": "user", "time": at, "turn_id": turn_id, "text": said, "audio_s": 0.0, **user},
        {"kind": "assistant", "time": at + 2, "turn_id": turn_id, "text": reply, "interrupted": False},
    ]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_journal_is_versioned_one_conversation_a_file_and_never_appended_to(tmp_path: Path) -> None:
    folder = tmp_path / "conversations"
    log = HistoryLog(folder / "day.jsonl")
    started: list[str] = []
    log.on_new_file = started.append
    log.write("new_conversation", persona="assistant")
    log.write("user", turn_id=1, text="hello", audio_s=0.0)
    log.keep(MediaItem(1, "user", audio=np.full(1600, 1000, np.int16), rate_hz=16_000))
    log.write("assistant", turn_id=1, text="hi there", interrupted=False)
    log.flush()
    first = log.path
    log.write("new_conversation", persona="storyteller")
    log.write("user", turn_id=2, text="a story please", audio_s=0.0)
    log.close()
    second = log.path
    assert first != second and started == [str(first), str(second)]
    header = json.loads(first.read_text().splitlines()[0])
    assert header["kind"] == "journal" and header["format"] == FORMAT_VERSION == 2
    assert [r["kind"] for r in read_history(first)] == ["new_conversation", "user", "media", "assistant"]
    (media,) = [r for r in read_history(first) if r["kind"] == "media"]
    with wave.open(str(folder / media["file"]), "rb") as kept:
        assert (kept.getframerate(), kept.getnframes()) == (16_000, 1600)
    assert not list(folder.rglob("*.tmp"))
    before = first.read_bytes()
    again = HistoryLog(first)  # a second run that picked the same name in the same second
    again.write("user", turn_id=1, text="other", audio_s=0.0)
    again.close()
    assert first.read_bytes() == before and again.path != first


def test_the_list_shows_date_persona_first_words_length_and_finds_words(tmp_path: Path) -> None:
    folder = tmp_path / "conversations"
    log = HistoryLog(folder / "talk.jsonl")
    log.write("new_conversation", persona="storyteller")
    talk = [("Tell me about Lisbon", "It is sunny"), ("and Porto?", "Rainy")]
    for turn_id, (said, reply) in enumerate(talk, 1):
        log.write("user", turn_id=turn_id, text=said, audio_s=0.0)
        log.write("assistant", turn_id=turn_id, text=reply, interrupted=False)
    log.write("user", turn_id=3, text="", audio_s=1.5)
    log.write("transcript", turn_id=3, text="what about Madrid")
    log.write("assistant", turn_id=3, text="Dry", interrupted=True)
    log.close()
    shelf = list_conversations(folder)
    (info,) = shelf.conversations
    assert shelf.problems == [] and info.can_continue
    assert (info.persona, info.first_words, info.turns) == ("storyteller", "Tell me about Lisbon", 3)
    assert info.format == 2
    assert info.started_s > 0 and info.duration_s >= 0 and info.audio_s == 1.5
    assert search(shelf.conversations, "madrid") == [info]  # a transcript of a spoken turn
    assert search(shelf.conversations, "RAINY porto") == [info]  # a reply, any case and order
    assert search(shelf.conversations, "berlin") == []
    loaded = load_conversation(info)
    assert [(m.role, m.text, m.interrupted) for m in loaded.messages] == [
        ("user", "Tell me about Lisbon", False), ("assistant", "It is sunny", False),
        ("user", "and Porto?", False), ("assistant", "Rainy", False),
        ("user", "what about Madrid", False), ("assistant", "Dry", True),
    ]  # fmt: skip
    assert loaded.messages[4].audio_s == 1.5 and loaded.media == {}
    later = write_journal(
        folder,
        "later.jsonl",
        [{"kind": "continued", "source": "talk.jsonl", "part": 0}, *exchange(9, "x", "y", 5.0)],
    )
    marked = {i.path: i.continued for i in list_conversations(folder).conversations}
    assert marked == {info.path: True, later: False}


def test_an_old_unversioned_journal_still_opens_each_conversation(tmp_path: Path) -> None:
    folder = tmp_path / "conversations"
    write_journal(
        folder, "20250101-100000.jsonl",
        [{"kind": "model_ready", "time": 100.0, "source": "", "device": "cpu", "is_demo": True},
         *exchange(1, "first chat", "one", 101.0),
         {"kind": "new_conversation", "time": 110.0, "persona": "teacher"},
         *exchange(2, "second chat", "two", 111.0)],
    )  # fmt: skip
    shelf = list_conversations(folder)
    assert [(i.first_words, i.persona, i.format, i.parts) for i in shelf.conversations] == [
        ("second chat", "teacher", 1, 2), ("first chat", "", 1, 2),
    ]  # fmt: skip
    assert shelf.problems == [] and all(i.can_continue for i in shelf.conversations)
    assert [m.text for m in load_conversation(shelf.conversations[1]).messages] == ["first chat", "one"]


def test_a_cut_journal_and_a_newer_one_show_what_reads_and_say_what_does_not(tmp_path: Path) -> None:
    folder = tmp_path / "conversations"
    cut = write_journal(
        folder, "cut.jsonl",
        [{"kind": "journal", "format": 2, "time": 50.0}, *exchange(1, "before the crash", "ok", 51.0),
         {"kind": "user", "time": 60.0, "turn_id": 2, "text": "lost words", "audio_s": 0.0}],
        tail='{"kind": "assistant", "time": 61.0, "turn_id": 2, "text": "half a rep',
    )  # fmt: skip
    newer = write_journal(
        folder, "newer.jsonl",
        [{"kind": "journal", "format": 7, "time": 70.0}, *exchange(1, "from the future", "hello", 71.0),
         {"kind": "user", "time": 80.0, "turn_id": 2, "text": {"parts": ["rich"]}},
         {"kind": "hologram", "time": 81.0}],
    )  # fmt: skip
    write_journal(folder, "garbage.jsonl", [], tail="\x00\x01 not json at all\n")
    before = snapshot(folder)
    shelf = list_conversations(folder)
    by_name = {i.path.name: i for i in shelf.conversations}
    assert set(by_name) == {"cut.jsonl", "newer.jsonl", "garbage.jsonl"}
    assert by_name["cut.jsonl"].turns == 2 and by_name["cut.jsonl"].can_continue
    cut_texts = [m.text for m in load_conversation(by_name["cut.jsonl"]).messages]
    assert cut_texts == ["before the crash", "ok", "lost words"]
    assert any("cut.jsonl" in p and "cut off" in p for p in shelf.problems)
    future = by_name["newer.jsonl"]
    assert future.turns == 1 and not future.can_continue
    assert [m.text for m in load_conversation(future).messages] == ["from the future", "hello"]
    assert any("newer.jsonl" in p and "format 7" in p for p in shelf.problems)
    assert any("newer.jsonl" in p and "not shown" in p for p in shelf.problems)
    assert by_name["garbage.jsonl"].turns == 0 and any("garbage.jsonl" in p for p in shelf.problems)
    assert snapshot(folder) == before  # reading changed nothing
    assert cut.exists() and newer.exists()


def test_delete_removes_the_journal_and_its_media(tmp_path: Path) -> None:
    folder = tmp_path / "conversations"
    log = HistoryLog(folder / "gone.jsonl")
    log.write("user", turn_id=1, text="forget me", audio_s=0.0)
    log.keep(MediaItem(1, "reply", audio=np.zeros(2400, np.float32), rate_hz=24_000))
    log.write("assistant", turn_id=1, text="done", interrupted=False)
    log.close()
    keep = write_journal(folder, "kept.jsonl", exchange(1, "keep me", "sure", 5.0))
    (info,) = [i for i in list_conversations(folder).conversations if i.path.name == "gone.jsonl"]
    assert load_conversation(info).media[1].reply_audio is not None
    delete_conversation(info)
    assert sorted(p.name for p in folder.iterdir()) == [keep.name]


def spoken_turn(folder: Path, turn_id: int, seconds: float, *, image: bool = False) -> list[dict[str, Any]]:
    media = folder / "long.media"
    media.mkdir(parents=True, exist_ok=True)
    with wave.open(str(media / f"{turn_id}-user.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(np.full(int(seconds * 16_000), 500, "<i2").tobytes())
    records = [
        {"kind": "user", "time": turn_id, "turn_id": turn_id, "text": "", "audio_s": seconds},
        {"kind": "transcript", "time": turn_id, "turn_id": turn_id, "text": f"words of turn {turn_id}"},
    ]
    file = f"long.media/{turn_id}-user.wav"
    records.append({"kind": "media", "time": turn_id, "turn_id": turn_id, "role": "user", "file": file})
    if image:
        from PIL import Image

        Image.new("RGB", (320, 320)).save(media / f"{turn_id}-image-0.png")
        file = f"long.media/{turn_id}-image-0.png"
        records.append({"kind": "media", "time": turn_id, "turn_id": turn_id, "role": "image", "file": file})
    records.append({"kind": "assistant", "time": turn_id, "turn_id": turn_id, "text": f"reply {turn_id}"})
    return records


@pytest.mark.parametrize(
    ("budget", "kept_turns", "with_audio", "with_images"),
    [(100_000, 4, 4, 4), (900, 4, 4, 3), (700, 4, 4, 1), (500, 4, 2, 1), (280, 2, 1, 1)],
)
def test_continuing_drops_images_first_then_audio_then_the_oldest_turns(
    tmp_path: Path, budget: int, kept_turns: int, with_audio: int, with_images: int
) -> None:
    folder = tmp_path / "conversations"
    records = [r for t in range(1, 5) for r in spoken_turn(folder, t, 10.0, image=True)]
    write_journal(folder, "long.jsonl", records)
    (info,) = list_conversations(folder).conversations
    plan = restore_plan(load_conversation(info), context_tokens=budget * 2)
    assert len(plan.exchanges) == kept_turns
    assert sum(e.audio is not None for e in plan.exchanges) == with_audio
    assert sum(bool(e.images) for e in plan.exchanges) == with_images
    assert plan.exchanges[-1].audio is not None and plan.exchanges[-1].images  # the newest keeps all
    assert plan.exchanges[-1].turn_id == 4 and plan.estimated_tokens <= budget
    for e in plan.exchanges:
        assert e.text == ("" if e.audio is not None else f"words of turn {e.turn_id}")
    assert bool(plan.dropped) == (budget < 100_000)


def test_the_user_audio_replayed_is_bounded_like_a_crash_restore(tmp_path: Path) -> None:
    folder = tmp_path / "conversations"
    records = [r for t in range(1, 4) for r in spoken_turn(folder, t, 2.0)]
    write_journal(folder, "long.jsonl", records)
    (info,) = list_conversations(folder).conversations
    conversation = load_conversation(info)
    conversation.turns[0].transcript = ""
    plan = restore_plan(conversation, replay_audio_s=4.5)
    assert [e.audio is not None for e in plan.exchanges] == [False, True, True]
    assert plan.exchanges[0].text == EARLIER_SPOKEN and "recorded speech of 1" in plan.dropped[0]


def test_a_finished_turn_keeps_both_sides_audio_and_its_images(tmp_path: Path) -> None:
    from app.client_history import ClientHistory
    from app.kept_media import MediaKeeper, turn_records
    from app.recording import Recording
    from events import ReplyTruncated, TurnFinished, TurnStats

    class Client:  # the engine client's parts the keeper reads (real ones)
        recording = Recording()
        conversation = ClientHistory()

    folder = tmp_path / "conversations"
    log = HistoryLog(folder / "kept.jsonl")
    keeper = MediaKeeper(log, Client)
    picture = np.zeros((48, 64, 3), np.uint8)
    picture[:, :32] = (255, 0, 0)
    Client.recording.user(1, np.full(16_000, 2000, np.int16))
    Client.recording.reply(1, np.full(4800, 0.25, np.float32))
    Client.conversation.user(1, "look", None, (picture,))
    Client.recording.user(2, np.full(8000, 100, np.int16))
    Client.recording.reply(2, np.full(9600, 0.5, np.float32))
    Client.recording.cut(2, 2400)  # the user heard 0.1 s of reply 2
    for turn_id in (1, 2):
        log.write("user", turn_id=turn_id, text="", audio_s=1.0)
    keeper.on_event(TurnFinished(1, TurnStats()))
    keeper.on_event(TurnFinished(2, TurnStats(cancelled=True)))  # cut: kept when the cut is known
    keeper.on_event(ReplyTruncated(2, "he"))
    keeper.on_event(ReplyTruncated(2, "he"))  # once only
    log.write("assistant", turn_id=1, text="a red half", interrupted=False)
    log.write("assistant", turn_id=2, text="he", interrupted=True)
    log.close()
    (info,) = list_conversations(folder).conversations
    loaded = load_conversation(info)
    assert sorted(p.name for p in log.media_dir.iterdir()) == [
        "1-image-0.png", "1-reply.wav", "1-user.wav", "2-reply.wav", "2-user.wav",
    ]  # fmt: skip
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(loaded.media[1].images[0])), picture)
    first, second = turn_records(loaded.turns)
    assert first.user_audio is not None and first.user_audio.size == 16_000
    assert np.allclose(first.reply_audio(), 0.25, atol=1e-3) and first.reply_audio().size == 4800
    assert second.reply_audio().size == 2400  # as heard
