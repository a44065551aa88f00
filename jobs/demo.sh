#!/usr/bin/env bash
# README command (1): installs what is missing, builds, builds the embedded task
# suite (cached in data/suite), and runs the main job on 8 ranks:
#   mpirun -np 8 tadist config/demo.cfg
# The job pre-trains its own encoder first (models/demo_vit.h5, cached: delete
# it to pre-train again). Extra arguments go to tadist (e.g. --set
# finetune.steps=100). Results: runs/demo/report.md.
exec bash "$(dirname "$0")/suite_job.sh" config/demo.cfg "$@"
