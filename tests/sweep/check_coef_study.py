"""The study's coefficient-search means against the runs' own results.

check_coef_study.py SWEEP_DIR: for every configuration of results.json
"study" with coef_search entries, the mean of merged_abs over seeds equals the
mean of the done runs' modes.<mode>.coef_search.<method>.<name>.heads.theta0.
abs_test (recomputed here from each runs/rNNN/results.json), and every
configuration has at least one such entry. Exit 1 on any mismatch."""
import glob
import json
import os
import sys

d = sys.argv[1]
study = json.load(open(os.path.join(d, "results.json")))["study"]
runs = []
for p in sorted(glob.glob(os.path.join(d, "runs", "r*", "results.json"))):
    o = json.load(open(p))
    if o.get("sweep_run", {}).get("done"):
        runs.append(o)
bad = 0
for c in study["configs"]:
    cs = c.get("coef_search")
    if not cs:
        print("FAIL: configuration %s %s has no coef_search" % (c["mode"], c["settings"]))
        bad = 1
        continue
    for name, e in cs.items():
        vals = []
        for o in runs:
            m = o["modes"].get(c["mode"])
            vals_ = o["sweep_run"]["values"]
            settings = " ".join("%s=%s" % (k, v) for k, v in vals_.items()
                                if k not in ("run.seed", "finetune.modes"))
            if m is None or settings != (c["settings"] or ""):
                continue
            for method in m.get("coef_search", {}).values():
                if name in method:
                    vals.append(method[name]["heads"]["theta0"]["abs_test"])
        want = sum(vals) / len(vals) if vals else None
        got = e["merged_abs"]["mean"]
        print("%s %s %s: study %s, runs %s (%d)" % (c["mode"], c["settings"], name, got, want, len(vals)))
        if want is None or e["seeds"] != len(vals) or abs(got - want) > 1e-12:
            print("FAIL: the study's mean is not the runs' mean")
            bad = 1
sys.exit(bad)
