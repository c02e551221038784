#!/usr/bin/env bash
# `dialogym play` in a real terminal: tmux runs it, send-keys types a question, capture-pane
# reads the screen; Ctrl-C must end the game cleanly and keep the transcript.
#   DIALOGYM=target/release/dialogym scripts/play_tmux.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DIALOGYM:-target/release/dialogym}
command -v tmux >/dev/null || { echo "$0: tmux is not installed (scripts/test installs it)" >&2; exit 1; }
[ -x "$bin" ] || { echo "$0: $bin not built (cargo build --release)" >&2; exit 1; }
work=$(mktemp -d)
sock="$work/tmux.sock"
session="play$$"
cleanup() { tmux -S "$sock" kill-server 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
out="$work/t.jsonl"
tmux -S "$sock" new-session -d -s "$session" -x 160 -y 50 \
  "$bin play --seat agent --persona oracle --seed 0 --out $out; echo EXIT=\$?; sleep 30"

wait_for() { # text, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do
    if tmux -S "$sock" capture-pane -p -t "$session" | grep -qF -- "$1"; then return 0; fi
    sleep 0.1
  done
  echo "$0: the screen never showed \`$1\`:" >&2
  tmux -S "$sock" capture-pane -p -t "$session" >&2
  return 1
}

wait_for "you (ask)>" 30
tmux -S "$sock" send-keys -t "$session" "Is it alive?" Enter
wait_for "[turn 1] persona:" 10
wait_for "read as: answer:" 10
wait_for "possible secrets left" 10
tmux -S "$sock" send-keys -t "$session" C-c
wait_for "game ended by Ctrl-C after 1 agent turns" 10
wait_for "EXIT=0" 10
lines=$(wc -l < "$out")
[ "$lines" -eq 1 ] || { echo "$0: expected one transcript row in $out, found $lines" >&2; exit 1; }
grep -q '"content":"Is it alive?"' "$out" || { echo "$0: the question is not in the transcript" >&2; exit 1; }
echo "play under tmux: ok"
tmux -S "$sock" capture-pane -p -t "$session" | sed '/^$/d'
