#!/usr/bin/env bash
# Render every diagrams/*.mmd to .png and .svg beside it with mermaid-cli on Debian's Chromium.
# persona_pack_lifecycle.mmd itself is written from the code (python -m persona_pipeline.diagram).
#
# mermaid-cli's own browser download cannot work here, so it is installed with
# PUPPETEER_SKIP_DOWNLOAD=1 into a cache folder outside the repo and pointed at
# /usr/bin/chromium (apt-get install chromium) through a puppeteer config.
# Env: MMDC_DIR (install folder), CHROMIUM (browser path), MERMAID_CLI_VERSION.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="${MERMAID_CLI_VERSION:-12.2.0}"
prefix="${MMDC_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/persona-core/mermaid-cli-$version}"
chromium="${CHROMIUM:-$(command -v chromium || true)}"

if [ -z "$chromium" ] || [ ! -x "$chromium" ]; then
  echo "render.sh: Chromium not found; install it (apt-get install -y chromium) or set CHROMIUM" >&2
  exit 2
fi
mmdc="$prefix/node_modules/.bin/mmdc"
if [ ! -x "$mmdc" ]; then
  mkdir -p "$prefix"
  PUPPETEER_SKIP_DOWNLOAD=1 npm install --prefix "$prefix" --no-audit --no-fund --silent \
    "@mermaid-js/mermaid-cli@$version"
fi

config="$(mktemp --suffix=.json)"
trap 'rm -f "$config"' EXIT
cat >"$config" <<JSON
{"executablePath": "$chromium",
 "args": ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run"]}
JSON

shopt -s nullglob
for src in "$here"/*.mmd; do
  base="${src%.mmd}"
  "$mmdc" -q -p "$config" -i "$src" -o "$base.svg" -b white
  "$mmdc" -q -p "$config" -i "$src" -o "$base.png" -b white -s 2
  echo "rendered $(basename "$base").svg and .png"
done
