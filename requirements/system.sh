#!/usr/bin/env bash
# The system packages the console's browser tests need, installed from Debian's archive when
# missing: chromium (Playwright's own browser download is not used), fonts for every script the
# archive holds, and Node with npm (axe-core and the OpenID Provider of the console tests).
# Each package is skipped when present, so a machine that has them installs nothing.
set -euo pipefail

packages=()
command -v chromium >/dev/null || packages+=(chromium)
command -v npm >/dev/null || packages+=(nodejs npm)
for font in fonts-noto-core fonts-noto-cjk fonts-noto-color-emoji; do
  dpkg -s "$font" >/dev/null 2>&1 || packages+=("$font")
done
((${#packages[@]})) || exit 0

if ! command -v apt-get >/dev/null; then
  echo "missing system packages: ${packages[*]} (install them, or set COEXARCHIVE_CHROMIUM)" >&2
  exit 1
fi
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
echo "installing system packages: ${packages[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${packages[@]}"
