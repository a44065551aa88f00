#!/bin/sh
# The shipped configurations that fine-tune keep checkpoints on, so that a
# killed demo, or an interrupted run of a study, resumes from its checkpoints
# (README): in each, finetune.checkpoint_every (as --print-config resolves
# it, defaults included) is above 0 and gives at least 3 checkpoints before
# the last step of a task (the last step always writes one).
#   shipped_checkpoints.sh TADIST CONFIG...
set -u
TADIST=$1
shift
fail() { echo "FAIL: $*"; exit 1; }
for cfg in "$@"; do
    out=$("$TADIST" "$cfg" --print-config --check 2>&1) || { echo "$out"; fail "$cfg does not load"; }
    # the finetune section's keys (pretrain has a "steps" too)
    every=$(echo "$out" | awk '/^finetune = \{/ { f = 1 } f && /^};/ { f = 0 }
        f && $1 == "checkpoint_every" { gsub(/[^0-9]/, "", $3); print $3 }')
    steps=$(echo "$out" | awk '/^finetune = \{/ { f = 1 } f && /^};/ { f = 0 }
        f && $1 == "steps" { gsub(/[^0-9]/, "", $3); print $3 }')
    [ -n "$every" ] && [ -n "$steps" ] || fail "$cfg: no finetune.checkpoint_every or steps"
    echo "$cfg: finetune.steps = $steps, checkpoint_every = $every"
    [ "$every" -gt 0 ] || fail "$cfg turns checkpoints off (checkpoint_every = 0)"
    n=$(((steps - 1) / every))
    [ "$n" -ge 3 ] || fail "$cfg: only $n checkpoint(s) before the last step"
    echo "  $n checkpoint(s) before the last step, one at it"
done
