#!/usr/bin/env bash
# Renders a dialogym HTML report to a PNG in headless Chromium, with the network cut off
# (every host name resolves to nothing): a page that needed a CDN would render without it.
#   scripts/render_report.sh report.html report.png [WIDTH,HEIGHT]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2
  exit 2
fi
html=$(realpath "$1")
png=$(realpath -m "$2")
size=${3:-1280,2000}
[ -f "$html" ] || { echo "$0: $1: no such file" >&2; exit 1; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "$0: chromium is not installed (scripts/test installs Debian's chromium package)" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
rm -f "$png"
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --disable-dev-shm-usage --hide-scrollbars --host-resolver-rules="MAP * ~NOTFOUND" \
  --user-data-dir="$profile" --window-size="$size" --screenshot="$png" "file://$html" >/dev/null 2>&1 || true
[ -s "$png" ] || { echo "$0: chromium wrote no screenshot for $html" >&2; exit 1; }
echo "$png"
