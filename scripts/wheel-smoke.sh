#!/usr/bin/env bash
# Builds the release wheel, installs it into a fresh virtual environment with no Rust toolchain on
# PATH, and runs the smoke test there.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf dist
maturin build --release --out dist
wheel=$(ls dist/llmint8-*.whl)
echo "built $wheel"
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
# Only the new environment and the base system: cargo/rustc are not reachable.
clean_path="$venv/bin:/usr/bin:/bin"
env -i HOME="$HOME" PATH="$clean_path" bash -c "
  set -euo pipefail
  ! command -v cargo >/dev/null || { echo 'cargo is visible; the check would prove nothing'; exit 1; }
  pip install --quiet '$wheel'
  cd / && python '$PWD/scripts/smoke.py' && llmint8 --help >/dev/null
  # The start-up hook (llmint8_autoload.pth) ran, and imported nothing heavy.
  python -c \"import sys; heavy = {m.split('.')[0] for m in sys.modules} & {'torch', 'llmint8', 'transformers'}; assert '_llmint8_autoload' in sys.modules and not heavy, heavy; print('start-up hook installed')\"
"
rm -rf "$(dirname "$venv")"
