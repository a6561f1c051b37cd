"""Omni Desk command line (the `omnidesk` console script).

Flags override the config file. Nothing heavy is imported here: Qt, torch and the audio layer load
when they are used, so `--help` is instant and the window shows before the model loads.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.launch import Launch


def build_parser() -> argparse.ArgumentParser:
    from app.config import MODES, Config, default_path
    from app.history_log import data_dir
    from app.launch import version
    from facts import DEMO_LABEL, DTYPES, QUANTIZATIONS, VOICES

    d = Config()  # what an empty settings file means: the defaults shown
    parser = argparse.ArgumentParser(
        prog="omnidesk",
        description="Talk with Qwen3-Omni in real time, on your own computer.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"settings:       {default_path()}\n"
        "                (flags override them for this run; the defaults shown are an empty file's)\n"
        f"conversations:  {data_dir() / 'conversations'}\n"
        "the engine alone, behind the OpenAI Realtime protocol: omnidesk serve --help",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        metavar="SOURCE",
        help=f"hub id, instruct|thinking|captioner, or a folder ({d.model.source})",
    )
    model.add_argument("--quantization", choices=QUANTIZATIONS, help=f"default: {d.model.quantization}")
    model.add_argument("--device", help=f"auto, cpu, cuda, cuda:1, ... (default: {d.model.device})")
    model.add_argument("--dtype", choices=DTYPES, help=f"default: {d.model.dtype}")
    model.add_argument("--demo", action="store_true", help=f"the {DEMO_LABEL}")
    model.add_argument(
        "--engine",
        metavar="URL",
        help="use a running engine: ws(s)://HOST:PORT/v1/realtime (omnidesk serve) or "
        "http(s)://HOST:PORT/v1 (vLLM-Omni); the key comes from $OMNIDESK_API_KEY "
        "(default: the app starts its own engine process)",
    )
    model.add_argument("--download", metavar="ID", help="download a checkpoint (resumable) and exit")
    talk = parser.add_argument_group("conversation")
    talk.add_argument(
        "--persona", help=f"persona id (file name without .toml; default: {d.conversation.persona})"
    )
    talk.add_argument("--voice", choices=VOICES, help="default: the persona's voice")
    talk.add_argument("--mode", choices=MODES, help=f"default: {d.audio.mode}")
    talk.add_argument("--text", action="store_true", help="no audio devices: type and read")
    audio = parser.add_argument_group("audio")
    audio.add_argument(
        "--input-device", metavar="NAME", help="microphone (part of its name; default: the system's)"
    )
    audio.add_argument(
        "--output-device", metavar="NAME", help="speaker (part of its name; default: the system's)"
    )
    audio.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    camera = parser.add_argument_group("camera").add_mutually_exclusive_group()
    camera.add_argument(
        "--camera",
        metavar="SOURCE",
        help=f"turn the camera on: an index, part of its name, or a video file (default: {d.camera.source})",
    )
    camera.add_argument("--no-camera", action="store_true", help="turn the camera off (it starts off)")
    parser.add_argument(
        "--config", metavar="FILE", type=Path, help=f"settings file to use instead of {default_path()}"
    )
    return parser


def launch_from(args: argparse.Namespace) -> Launch:
    from app import config as cfg
    from app.launch import Launch

    loaded = cfg.load(args.config, named=args.config is not None)
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
    merged_loaded = replace(loaded, config=merged)
    return Launch(merged_loaded, demo=args.demo, text_only=args.text, file_config=loaded.config)


def camera_changes(args: argparse.Namespace) -> dict[str, object]:
    if args.no_camera:
        return {"enabled": False}
    if args.camera is not None:
        return {"enabled": True, "source": args.camera}
    return {}


def display_problem() -> str | None:
    """Why no window can open, or None (Qt aborts the whole process when it cannot reach a display,
    so this is checked first)."""
    if os.environ.get("QT_QPA_PLATFORM") or not sys.platform.startswith("linux"):
        return None
    wayland = os.environ.get("WAYLAND_DISPLAY")
    if wayland:
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        if os.path.exists(wayland if os.path.isabs(wayland) else os.path.join(runtime, wayland)):
            return None
    display = os.environ.get("DISPLAY")
    if not display:
        return "no display to open a window on (DISPLAY is not set)"
    if not _x_server_answers():
        return f"the display {display!r} cannot be reached (no X server answers there)"
    return None


def _x_server_answers() -> bool:
    """Whether libxcb can connect to $DISPLAY (what Qt's xcb platform does first)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("xcb")
    if name is None:
        return True  # cannot check: let Qt try
    xcb = ctypes.CDLL(name)
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(None, None)
    try:
        return xcb.xcb_connection_has_error(connection) == 0
    finally:
        xcb.xcb_disconnect(connection)


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
    if launch.loaded.message:
        print(f"omnidesk: {launch.loaded.message}", file=sys.stderr)
    problem = display_problem()
    if problem is not None:
        if launch.text_only:
            from app.terminal_chat import run_terminal_chat

            try:
                return run_terminal_chat(launch)
            except KeyboardInterrupt:
                print("\nomnidesk: stopped", file=sys.stderr)
                return 130
        print(f"omnidesk: {problem}. Use --text to chat in this terminal.", file=sys.stderr)
        return 2
    from app.run import run_desk

    return run_desk(launch)


if __name__ == "__main__":
    raise SystemExit(main())
