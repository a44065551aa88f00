"""Compares the single stage's accuracies of two runs (results.json): every
modes.<mode>.single.<task>.heads.<set>.<split> of the first must be in the
second, within TOL (0: equal). Prints the largest difference; exit 1 past it.
   python3 compare_single.py FP32/results.json OTHER/results.json TOL"""
import json
import sys

a, b = (json.load(open(p)) for p in sys.argv[1:3])
tol = float(sys.argv[3])
worst, count = 0.0, 0
for mode, m in a["modes"].items():
    for task, t in m.get("single", {}).items():
        if not isinstance(t, dict) or "heads" not in t:
            continue
        for hs, splits in t["heads"].items():
            for split, x in splits.items():
                y = b["modes"][mode]["single"][task]["heads"][hs][split]
                worst, count = max(worst, abs(y - x)), count + 1
print("%d accuracies compared, largest difference %.4f (tolerance %g)" % (count, worst, tol))
sys.exit(0 if count > 0 and worst <= tol else 1)
