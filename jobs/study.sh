#!/usr/bin/env bash
# The embedded studies: installs what is missing, builds, builds the task suite
# (cached, as jobs/demo.sh), and runs a study configuration on 8 ranks:
#   bash jobs/study.sh                        config/study.cfg: 36 runs (mode x learning
#                                             rate x seed) on the label-trained encoder,
#                                             prototype heads; about 1.5 hours on 2 cores
#   bash jobs/study.sh config/clip_study.cfg  12 runs on the CLIP-style demo encoder,
#                                             zero-shot heads
# Killed, a study resumes where it stopped when started again. Report:
# runs/<run.name>/study.md. Extra arguments go to tadist (e.g. --set
# sweep.ranks_per_run=2).
cfg=config/study.cfg
case "${1:-}" in *.cfg) cfg=$1; shift ;; esac
exec bash "$(dirname "$0")/suite_job.sh" "$cfg" "$@"
