#!/usr/bin/env bash
# README command (1): installs what is missing, builds, builds the embedded task
# suite (cached in data/suite), and runs the main job on 8 ranks:
#   mpirun -np 8 tadist config/demo.cfg
# The pre-trained CLIP-style encoder, models/demo_clip.h5, ships in the
# repository (jobs/pretrain_demo.sh recreates it; if it is missing, the job
# trains it, about 21 minutes more). Extra arguments go to tadist (e.g. --set
# finetune.steps=100). Results: runs/demo/report.md.
exec bash "$(dirname "$0")/suite_job.sh" config/demo.cfg "$@"
