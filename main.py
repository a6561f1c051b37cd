"""Omni Desk command line (the `omnidesk` console script).

Flags override the config file. Nothing heavy is imported here: Qt, torch and the audio layer load
when they are used, so `--help` is instant and the window shows before the model loads.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.launch import Launch


def build_parser() -> argparse.ArgumentParser:
    from app.config import DTYPES, MODES, QUANTIZATIONS
    from facts import DEMO_LABEL, VOICES

    parser = argparse.ArgumentParser(
        prog="omnidesk",
        description="Talk with Qwen3-Omni in real time, on your own computer.",
        epilog="Settings are read from config.toml in the user config directory; flags override them. "
        "`omnidesk serve --help`: the engine alone, behind the OpenAI Realtime protocol.",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", metavar="SOURCE", help="hub id, instruct|thinking|captioner, or a folder")
    model.add_argument("--quantization", choices=QUANTIZATIONS)
    model.add_argument("--device", help="auto, cpu, cuda, cuda:1, ...")
    model.add_argument("--dtype", choices=DTYPES)
    model.add_argument("--demo", action="store_true", help=f"the {DEMO_LABEL}")
    model.add_argument(
        "--engine",
        metavar="URL",
        help="use a running engine: ws(s)://HOST:PORT/v1/realtime (omnidesk serve) or "
        "http(s)://HOST:PORT/v1 (vLLM-Omni); the key comes from $OMNIDESK_API_KEY",
    )
    model.add_argument("--download", metavar="ID", help="download a checkpoint (resumable) and exit")
    talk = parser.add_argument_group("conversation")
    talk.add_argument("--persona", help="persona id (file name without .toml)")
    talk.add_argument("--voice", choices=VOICES)
    talk.add_argument("--mode", choices=MODES)
    talk.add_argument("--text", action="store_true", help="no audio devices: type and read")
    audio = parser.add_argument_group("audio")
    audio.add_argument("--input-device", metavar="NAME", help="microphone (part of its name)")
    audio.add_argument("--output-device", metavar="NAME", help="speaker (part of its name)")
    audio.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    camera = parser.add_argument_group("camera").add_mutually_exclusive_group()
    camera.add_argument(
        "--camera", metavar="SOURCE", help="turn the camera on: an index, part of its name, or a video file"
    )
    camera.add_argument("--no-camera", action="store_true", help="turn the camera off")
    parser.add_argument("--config", metavar="FILE", type=Path, help="settings file to use instead")
    return parser


def launch_from(args: argparse.Namespace) -> Launch:
    from app import config as cfg
    from app.launch import Launch

    loaded = cfg.load(args.config)
    merged = cfg.with_changes(
        loaded.config,
        model={
            "source": args.model,
            "quantization": args.quantization,
            "device": args.device,
            "dtype": args.dtype,
        },
        conversation={"persona": args.persona, "voice": args.voice},
        audio={"input_device": args.input_device, "output_device": args.output_device, "mode": args.mode},
        camera=camera_changes(args),
        engine={"url": args.engine},
    )
    merged_loaded = cfg.LoadedConfig(merged, loaded.path, loaded.error)
    return Launch(merged_loaded, demo=args.demo, text_only=args.text, file_config=loaded.config)


def camera_changes(args: argparse.Namespace) -> dict[str, object]:
    if args.no_camera:
        return {"enabled": False}
    if args.camera is not None:
        return {"enabled": True, "source": args.camera}
    return {}


def has_display() -> bool:
    """Whether a window can open (Qt aborts the process when it cannot reach a display)."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        from realtime.cli import serve_main

        return serve_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.list_devices:
        try:
            from audio_io.devices import describe_devices

            print(describe_devices())
        except OSError as error:
            print(f"omnidesk: no audio system ({error})", file=sys.stderr)
            return 1
        return 0
    if args.download:
        from app.download import download_cli

        return download_cli(args.download)
    launch = launch_from(args)
    if launch.loaded.error is not None:
        print(f"omnidesk: {launch.loaded.message}", file=sys.stderr)
    if not has_display():
        if launch.text_only:
            from app.terminal_chat import run_terminal_chat

            return run_terminal_chat(launch)
        print(
            "omnidesk: no display to open a window on (DISPLAY is not set). "
            "Use --text to chat in this terminal.",
            file=sys.stderr,
        )
        return 2
    from app.run import run_desk

    return run_desk(launch)


if __name__ == "__main__":
    raise SystemExit(main())
