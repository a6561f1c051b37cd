"""Weight memory of Qwen3-Omni per part, bf16 against nf4: `python -m bench.memory [--json]`.

Built from the real Instruct config on the meta device (no weights needed), and from the same config
without the talker, the shape of the thinker-only Thinking/Captioner checkpoints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

INSTRUCT_CONFIG = (
    Path(__file__).resolve().parent.parent / "model" / "configs" / "qwen3-omni-30b-a3b-instruct.config.json"
)


def load_config(path: Path, *, with_talker: bool = True) -> Any:
    """The config at `path`; without the talker it is the layout of a thinker-only checkpoint."""
    from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import Qwen3OmniMoeConfig

    raw = json.loads(path.read_text())
    if not with_talker:
        raw["enable_audio_output"] = False
    return Qwen3OmniMoeConfig(**raw)


def measure(config: Any) -> dict[str, Any]:
    """bf16 and nf4 totals and parts, in GiB, for one config."""
    from model.memory import GIB, build_meta_model, memory_report

    model = build_meta_model(config)
    bf16 = memory_report(model, "none")
    nf4 = memory_report(model, "nf4")
    return {
        "parameters": bf16.parameters,
        "bf16_gb": round(bf16.total_bytes / GIB, 3),
        "nf4_gb": round(nf4.total_bytes / GIB, 3),
        "parts": {
            part: {"bf16_gb": round(n / GIB, 3), "nf4_gb": round(nf4.bytes_by_part[part] / GIB, 3)}
            for part, n in bf16.bytes_by_part.items()
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--config", type=Path, default=INSTRUCT_CONFIG, help="a Qwen3-Omni config.json")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "unit": "GiB (2**30 bytes)",
        "instruct": measure(load_config(args.config)),
        "thinker_only": measure(load_config(args.config, with_talker=False)),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name in ("instruct", "thinker_only"):
        entry = result[name]
        billions = entry["parameters"] / 1e9
        print(f"{name}: {billions:.2f} B parameters, bf16 {entry['bf16_gb']} GiB, nf4 {entry['nf4_gb']} GiB")
        for part, sizes in entry["parts"].items():
            print(f"  {part:18s} bf16 {sizes['bf16_gb']:7.3f}  nf4 {sizes['nf4_gb']:7.3f}")


if __name__ == "__main__":
    main()
