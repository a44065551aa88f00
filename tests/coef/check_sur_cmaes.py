"""Checks the cmaes strategy's records (tests/coef.cmake co_sur_cmaes_np1_np3):
every surrogate_<structure> record of every mode screened by CMA-ES, scored
at least most of the budget (a restart stops at a whole generation), verified
its top exactly; for ntk the surrogate's score of its best candidate is the
pool's exact one. Usage: check_sur_cmaes.py RESULTS.json BUDGET"""
import json
import sys

res = json.load(open(sys.argv[1]))
budget = int(sys.argv[2])
bad = 0
seen = 0
for mode, m in res["modes"].items():
    for name, rec in m.get("coef_search", {}).get("sum", {}).items():
        if not name.startswith("surrogate_"):
            continue
        seen += 1
        n = rec["candidates"]
        line = (f"{mode}/{name}: {rec['screening']}, {n} candidates, {rec['verified']} verified, "
                f"surrogate best {rec['surrogate_best_norm_val_surrogate']:.6f} exact "
                f"{rec['surrogate_best_norm_val_exact']:.6f}, Spearman {rec['spearman_verified']}")
        print(line)
        if rec["screening"] != "cmaes" or not (budget // 2 <= n <= budget) or rec["verified"] < 2:
            print("FAIL: not a CMA-ES screening of the budget")
            bad = 1
        if mode == "ntk" and abs(rec["surrogate_best_norm_val_surrogate"]
                                 - rec["surrogate_best_norm_val_exact"]) > 1e-9:
            print("FAIL: ntk's surrogate score is not the exact one")
            bad = 1
if seen != 4:
    print(f"FAIL: {seen} surrogate records, expected 4 (attn, ntk x task, block)")
    bad = 1
sys.exit(bad)
