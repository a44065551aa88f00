# Shell functions of the kill tests (tests/finetune/kill_resume.sh,
# tests/sweep/kill_resume.sh): start a job in its own session, and kill every
# process of that session with SIGKILL. Source it; fail() comes from the caller.

# start_session LOG CMD...: runs CMD in the background in a new session, output
# to LOG; sets pid and sid.
start_session() {
    log=$1
    shift
    setsid "$@" > "$log" 2>&1 &
    pid=$!
    i=0 # until the background child has run setsid (it is its own session then)
    while sid=$(ps -o sid= -p "$pid" | tr -d ' '); [ "$sid" != "$pid" ]; do
        i=$((i + 1))
        [ $i -le 200 ] && [ -n "$sid" ] ||
            { kill -9 "$pid" 2>/dev/null; fail "setsid did not start a session ($pid, '$sid')"; }
        sleep 0.05
    done
}

# kill_session: SIGKILL to mpirun and every rank (Open MPI puts each rank in
# its own process group, not its own session), then waits until all are gone.
kill_session() {
    pkill -KILL -s "$sid"
    i=0
    while [ -n "$(ps -o pid= -s "$sid")" ]; do
        i=$((i + 1))
        [ $i -le 600 ] || fail "processes of session $sid still alive after 30 s"
        sleep 0.05
        pkill -KILL -s "$sid"
    done
    wait "$pid" 2>/dev/null
}
