#!/usr/bin/env bash
# The embedded study: installs what is missing, builds, builds the task suite
# (cached, as jobs/demo.sh), and runs config/study.cfg on 8 ranks:
#   mpirun -np 8 tadist config/study.cfg
# 36 runs (mode x learning rate x seed); about 1.5 hours on 2 cores. Killed, it
# resumes where it stopped when started again. Report: runs/study/study.md.
# Extra arguments go to tadist (e.g. --set sweep.ranks_per_run=2).
exec bash "$(dirname "$0")/suite_job.sh" config/study.cfg "$@"
