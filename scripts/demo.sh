#!/usr/bin/env bash
# The demo's servers: the Stripe simulator in the background (or one already running on its
# port), Tally's webhook endpoint registered with it, then the development server in the
# foreground. A simulator started here is stopped when the server exits.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
SIM_PORT=12111
SIM_URL=http://127.0.0.1:$SIM_PORT
SIM_LOG=.stripe_sim.log

# The demo always talks to the simulator, whatever Stripe settings the shell has.
unset STRIPE_SECRET_KEY STRIPE_PUBLISHABLE_KEY
export STRIPE_API_HOST=$SIM_URL

sim_answers() {
    "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
        "$SIM_URL/_sim/config" 2>/dev/null
}

sim_pid=""
stop_sim() {
    if [[ -n $sim_pid ]]; then
        kill "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
}
trap stop_sim EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if sim_answers; then
    echo "Using the Stripe simulator already running at $SIM_URL"
else
    "$PY" -m stripe_sim --port "$SIM_PORT" --state .stripe_sim_state.json >"$SIM_LOG" 2>&1 &
    sim_pid=$!
    for _ in $(seq 50); do
        sim_answers && break
        if ! kill -0 "$sim_pid" 2>/dev/null; then
            sim_pid=""
            echo "The Stripe simulator did not start:" >&2
            tail -n 20 "$SIM_LOG" >&2
            exit 1
        fi
        sleep 0.2
    done
    sim_answers || { echo "The Stripe simulator does not answer at $SIM_URL (see $SIM_LOG)." >&2; exit 1; }
fi

"$PY" manage.py stripe_setup --site-url "http://$HOST:$PORT"
"$PY" manage.py catalog_sync
# The demo organization subscribes through the simulator, so the seed runs once it answers.
"$PY" manage.py demo_seed
"$PY" manage.py runserver "$HOST:$PORT"
