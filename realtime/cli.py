"""`omnidesk serve`'s command line: what to load, where to listen, and the key off loopback."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys

from realtime.wire import API_KEY_ENV, REALTIME_PATH

DEFAULT_PORT = 8765
LISTENING = "omnidesk serve: listening on"  # the line the app waits for when it starts its own engine


def build_parser() -> argparse.ArgumentParser:
    from facts import DTYPES, QUANTIZATIONS

    parser = argparse.ArgumentParser(
        prog="omnidesk serve",
        description=f"Serve the engine over the OpenAI Realtime protocol (WS {REALTIME_PATH}).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=f"Off loopback a key is required: set {API_KEY_ENV} (clients send it as 'Authorization: "
        "Bearer KEY'). Put the server behind a TLS proxy to reach it over wss://.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: any free port)")
    parser.add_argument(
        "--model", default="instruct", help="hub id, instruct|thinking|captioner, or a folder"
    )
    parser.add_argument("--demo", action="store_true", help="the demo model (random weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", choices=DTYPES, default="auto")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="auto")
    parser.add_argument(
        "--engine-options",
        default="{}",
        metavar="JSON",
        help="engine settings, e.g. '{\"max_text_tokens\": 256}'",
    )
    parser.add_argument(
        "--api-key-env", default=API_KEY_ENV, metavar="VAR", help="environment variable that holds the key"
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def engine_options_of(text: str) -> dict[str, object]:
    """EngineSettings fields from JSON, refusing names the engine does not have."""
    import dataclasses
    import json

    from model.engine import EngineSettings

    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error})") from None
    known = {f.name for f in dataclasses.fields(EngineSettings)} - {
        "sampling",
        "system_prompt",
        "speaker",
        "speak",
    }
    if not isinstance(options, dict) or not set(options) <= known:
        raise ValueError(f"expected an object with some of: {', '.join(sorted(known))}")
    return options


def serve_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    api_key = os.environ.get(args.api_key_env) or None
    if not is_loopback(args.host) and api_key is None:
        print(
            f"omnidesk serve: refusing to listen on {args.host} without a key: set {args.api_key_env} "
            "(or listen on 127.0.0.1)",
            file=sys.stderr,
        )
        return 2
    from realtime.host import LoadOptions
    from realtime.server import ServerState, run_server

    try:
        engine_options = engine_options_of(args.engine_options)
    except ValueError as error:
        print(f"omnidesk serve: --engine-options: {error}", file=sys.stderr)
        return 2
    options = LoadOptions(args.model, args.demo, args.device, args.dtype, args.quantization, engine_options)
    state = ServerState(options, api_key)

    def ready(port: int) -> None:
        print(f"{LISTENING} ws://{args.host}:{port}{REALTIME_PATH}", flush=True)

    try:
        asyncio.run(run_server(state, args.host, args.port, ready))
    except KeyboardInterrupt:
        return 0
    except OSError as error:
        print(f"omnidesk serve: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0
