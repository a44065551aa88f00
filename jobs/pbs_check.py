#!/usr/bin/env python3
"""Static check of the PBS batch script against the Slurm one (no PBS server
needed; OpenPBS is not in Debian). Test pbs_script_static (tests/slurm.cmake).

    python3 jobs/pbs_check.py jobs/slurm_vit.sbatch jobs/pbs_vit.pbs

Claims, each reported when it fails:
  - every #PBS directive parses as qsub would read it: a known option, its
    value of the right form (-l resource lists: select chunks with integer
    counts and sizes, walltime [[HH:]MM:]SS, ...), and all of them before the
    first command (qsub stops reading directives there); the same for #SBATCH;
  - both scripts ask for the same job: nodes, ranks per node, cores per rank
    (PBS: ncpus / mpiprocs, also the TADIST_BLAS_THREADS it exports) and wall
    time, and PBS's mpirun starts nodes x ranks-per-node ranks, ppr:R:node:PE=C;
  - the tadist command line - from "$TADIST" to the end of the command - is
    the same in every launch of both scripts.
Exit status 0 when all hold."""
import re
import shlex
import sys

errors = []


def err(msg):
    errors.append(msg)


def split_comment(text):
    """The directive without its trailing comment (a '#' after a blank)."""
    return re.split(r"\s+#", text, maxsplit=1)[0].strip()


def directives(path, prefix):
    """(line number, text) of the prefix's directives; checks that each comes
    before the first command, where the batch system stops reading them."""
    out, first_cmd = [], None
    with open(path) as f:
        lines = f.read().splitlines()
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith(prefix + " ") or s == prefix:
            if first_cmd is not None:
                err(f"{path}:{n}: {prefix} after the first command (line {first_cmd}): ignored")
            out.append((n, split_comment(s[len(prefix):])))
        elif s and not s.startswith("#") and first_cmd is None:
            first_cmd = n
    return out, lines


SIZE = re.compile(r"^\d+(b|kb|mb|gb|tb|pb|w|kw|mw|gw|tw)?$", re.I)


def seconds(text, where):
    """[[HH:]MM:]SS (PBS), as seconds; None when malformed."""
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        err(f"{where}: walltime '{text}' is not [[HH:]MM:]SS")
        return None
    s = 0
    for p in parts:
        s = s * 60 + int(p)
    return s


def parse_pbs(path):
    d, lines = directives(path, "#PBS")
    job = {}
    takes_value = set("ANlojeqmMWvSJ")
    for n, text in d:
        where = f"{path}:{n}"
        try:
            words = shlex.split(text)
        except ValueError as e:
            err(f"{where}: {e}")
            continue
        if not words or not re.fullmatch(r"-[A-Za-z]", words[0]):
            err(f"{where}: '{text}' is not a qsub option")
            continue
        opt, args = words[0][1], words[1:]
        if opt in takes_value and len(args) != 1:
            err(f"{where}: -{opt} takes one value, got {args}")
            continue
        if opt not in takes_value and opt not in "VrhIz":
            err(f"{where}: unknown qsub option -{opt}")
            continue
        val = args[0] if args else ""
        if opt == "N" and not re.fullmatch(r"[A-Za-z][\w.+-]{0,235}", val):
            err(f"{where}: job name '{val}' (a letter, then letters, digits, . _ + -)")
        elif opt == "j" and val not in ("oe", "eo", "n"):
            err(f"{where}: -j {val}: expected oe, eo or n")
        elif opt == "l":
            for res in val.split(","):
                key, eq, v = res.partition("=")
                if not eq or not v:
                    err(f"{where}: resource '{res}' is not name=value")
                elif key == "select":
                    chunks = v.split("+")
                    if len(chunks) != 1:
                        err(f"{where}: several chunk kinds; this check expects one")
                    parts = chunks[0].split(":")
                    if not parts[0].isdigit():
                        err(f"{where}: select count '{parts[0]}' is not a number")
                    else:
                        job["nodes"] = int(parts[0])
                    for p in parts[1:]:
                        k, eq2, x = p.partition("=")
                        if not eq2:
                            err(f"{where}: chunk resource '{p}' is not name=value")
                        elif k in ("ncpus", "mpiprocs", "ompthreads", "ngpus"):
                            if not x.isdigit() or int(x) < 1:
                                err(f"{where}: {k}={x} is not a positive integer")
                            else:
                                job[k] = int(x)
                        elif k in ("mem", "vmem"):
                            if not SIZE.match(x):
                                err(f"{where}: {k}={x} is not a size")
                        else:
                            err(f"{where}: unknown chunk resource '{k}'")
                elif key == "walltime":
                    job["walltime"] = seconds(v, where)
                elif key == "place":
                    if not re.fullmatch(r"(free|pack|scatter|vscatter)(:(excl|shared|exclhost))?", v):
                        err(f"{where}: place={v}")
                else:
                    err(f"{where}: unknown resource '{key}'")
    return job, lines


def slurm_time(text, where):
    """Slurm's time formats: MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        err(f"{where}: --time={text} is not a Slurm time")
        return None
    d, a, b, c = m.groups()
    if d is not None:
        return ((int(d) * 24 + int(a)) * 60 + int(b or 0)) * 60 + int(c or 0)
    if c is not None:
        return (int(a) * 60 + int(b)) * 60 + int(c)
    if b is not None:
        return int(a) * 60 + int(b)
    return int(a) * 60


def parse_slurm(path):
    d, lines = directives(path, "#SBATCH")
    job = {}
    known = {"job-name", "nodes", "ntasks-per-node", "cpus-per-task", "mem", "time", "signal",
             "requeue", "open-mode", "output", "error", "partition", "account", "ntasks"}
    for n, text in d:
        where = f"{path}:{n}"
        m = re.fullmatch(r"--([a-z-]+)(?:=(\S+))?", text)
        if not m:
            err(f"{where}: '{text}' is not --option[=value]")
            continue
        key, val = m.groups()
        if key not in known:
            err(f"{where}: unexpected sbatch option --{key}")
        elif key in ("nodes", "ntasks-per-node", "cpus-per-task"):
            if not val or not val.isdigit():
                err(f"{where}: --{key}={val} is not a number")
            else:
                job[key] = int(val)
        elif key == "time":
            job["walltime"] = slurm_time(val or "", where)
        elif key == "signal" and not re.fullmatch(r"(B:|R:|RB:)?(USR1|USR2|TERM|\d+)(@\d+)?", val or ""):
            err(f"{where}: --signal={val}")
        elif key == "open-mode" and val not in ("append", "truncate"):
            err(f"{where}: --open-mode={val}")
    return job, lines


def commands(lines):
    """Logical lines (continuations joined) that are not comments."""
    out, cur = [], ""
    for line in lines:
        s = line.rstrip()
        if s.lstrip().startswith("#") and not cur:
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        out.append(cur + s)
        cur = ""
    return [c.strip() for c in out if c.strip()]


def launches(path, lines):
    """Each launch: (launcher words, tadist command words from "$TADIST")."""
    out = []
    for c in commands(lines):
        if '"$TADIST"' not in c or c.startswith("TADIST="):
            continue
        c = split_comment(c)
        words = shlex.split(c, posix=False)
        if words[-1] == "&":
            words = words[:-1]
        i = words.index('"$TADIST"')
        out.append((words[:i], words[i:]))
    if not out:
        err(f"{path}: no command runs \"$TADIST\"")
    return out


def main(slurm_path, pbs_path):
    sj, sl = parse_slurm(slurm_path)
    pj, pl = parse_pbs(pbs_path)
    for k in ("nodes", "ntasks-per-node", "cpus-per-task", "walltime"):
        if sj.get(k) is None:
            err(f"{slurm_path}: no #SBATCH --{k}")
    for k in ("nodes", "ncpus", "mpiprocs", "walltime"):
        if pj.get(k) is None:
            err(f"{pbs_path}: no {k} in the #PBS -l lines")
    sla, pla = launches(slurm_path, sl), launches(pbs_path, pl)
    if errors:
        return
    per = pj["ncpus"] // pj["mpiprocs"]
    pairs = [("nodes", sj["nodes"], pj["nodes"]),
             ("ranks per node", sj["ntasks-per-node"], pj["mpiprocs"]),
             ("cores per rank", sj["cpus-per-task"], per),
             ("wall time (s)", sj["walltime"], pj["walltime"])]
    for what, a, b in pairs:
        if a != b:
            err(f"{what}: {a} in {slurm_path}, {b} in {pbs_path}")
    if pj["ncpus"] % pj["mpiprocs"]:
        err(f"{pbs_path}: ncpus {pj['ncpus']} is not a multiple of mpiprocs {pj['mpiprocs']}")
    m = re.search(r"^export TADIST_BLAS_THREADS=(\d+)", "\n".join(pl), re.M)
    if not m or int(m.group(1)) != per:
        err(f"{pbs_path}: TADIST_BLAS_THREADS must be ncpus / mpiprocs = {per}")
    for launcher, _ in pla:
        text = " ".join(launcher)
        want = f"-np {pj['nodes'] * pj['mpiprocs']} "
        if want not in text + " ":
            err(f"{pbs_path}: mpirun must start {pj['nodes'] * pj['mpiprocs']} ranks ({want.strip()})")
        if f"ppr:{pj['mpiprocs']}:node:PE={per}" not in text:
            err(f"{pbs_path}: mpirun must map ppr:{pj['mpiprocs']}:node:PE={per}")
    ref = sla[0][1]
    for path, ls in ((slurm_path, sla), (pbs_path, pla)):
        for launcher, cmd in ls:
            if cmd != ref:
                err(f"{path}: tadist command line {' '.join(cmd)!r} differs from "
                    f"{' '.join(ref)!r} ({slurm_path})")
    if not errors:
        print(f"pbs_check: {pbs_path}: directives parse; {pj['nodes']} node(s) x "
              f"{pj['mpiprocs']} rank(s) x {per} core(s), {pj['walltime']} s, as "
              f"{slurm_path}; tadist command line in {len(sla) + len(pla)} launch(es): "
              f"{' '.join(ref)}: OK")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: pbs_check.py SLURM_SCRIPT PBS_SCRIPT")
    main(sys.argv[1], sys.argv[2])
    for e in errors:
        print("pbs_check: " + e, file=sys.stderr)
    sys.exit(1 if errors else 0)
