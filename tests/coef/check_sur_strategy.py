"""Checks the records of a merge.search = surrogate strategy (tests/coef.cmake
co_sur_cmaes_np1_np3, co_sur_adamerging_np1_np3): every surrogate_<structure>
record of every mode was screened by STRATEGY and verified at least 2
candidates exactly; for ntk the surrogate's score of its best candidate is the
pool's exact one (the surrogate is exact for the linearised model).
  cmaes:      at least half of BUDGET candidates scored, at most BUDGET
  adamerging: BUDGET steps, the objective lower after them than at the start
Usage: check_sur_strategy.py RESULTS.json STRATEGY BUDGET"""
import json
import sys

res = json.load(open(sys.argv[1]))
strategy, budget = sys.argv[2], int(sys.argv[3])
bad = 0
seen = 0
for mode, m in res["modes"].items():
    for name, rec in m.get("coef_search", {}).get("sum", {}).items():
        if not name.startswith("surrogate_"):
            continue
        seen += 1
        n = rec["candidates"]
        print(f"{mode}/{name}: {rec['screening']}, {n} candidates, {rec['verified']} verified, "
              f"surrogate best {rec['surrogate_best_norm_val_surrogate']:.6f} exact "
              f"{rec['surrogate_best_norm_val_exact']:.6f}, Spearman {rec['spearman_verified']}")
        if rec["screening"] != strategy or rec["verified"] < 2:
            print(f"FAIL: not a {strategy} screening with 2 or more candidates verified")
            bad = 1
        if strategy == "cmaes" and not (budget // 2 <= n <= budget):
            print(f"FAIL: {n} candidates for a budget of {budget}")
            bad = 1
        if strategy == "adamerging":
            tr = rec["adamerging_trace"]
            print(f"  {rec['adamerging_objective']} on {rec['adamerging_split']}: "
                  f"{tr[0]:.6f} -> {tr[-1]:.6f} in {len(tr)} steps")
            if len(tr) != budget or not tr[-1] < tr[0]:
                print("FAIL: the objective did not fall over the steps")
                bad = 1
        if mode == "ntk" and abs(rec["surrogate_best_norm_val_surrogate"]
                                 - rec["surrogate_best_norm_val_exact"]) > 1e-9:
            print("FAIL: ntk's surrogate score is not the exact one")
            bad = 1
if seen != 4:
    print(f"FAIL: {seen} surrogate records, expected 4 (attn, ntk x task, block)")
    bad = 1
sys.exit(bad)
