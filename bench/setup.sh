#!/usr/bin/env bash
# Set up everything the ferry benchmark needs (idempotent).
#   - wrk (load generator) and taskset from Debian
#   - one virtualenv per peer under bench/.envs/<peer>, installed from PyPI with pinned
#     versions (bench/requirements/<peer>.txt once it exists; otherwise resolved from the
#     loose specs below, with the model libraries pinned to the main venv's versions, and
#     the result frozen into bench/requirements/<peer>.txt)
#   - the models (bench/models.py)
# A peer that cannot install is recorded in bench/.envs/<peer>.FAILED and skipped.
set -uo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
MAIN_PY="$ROOT/.venv/bin/python"
UV="${UV:-$ROOT/.venv/bin/uv}"
ENVS="$BENCH/.envs"
REQ="$BENCH/requirements"
mkdir -p "$ENVS" "$REQ"

# ---------------------------------------------------------------- system packages
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v taskset >/dev/null || need_apt+=(util-linux)
if ((${#need_apt[@]})); then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q && $SUDO apt-get install -y -q "${need_apt[@]}" || {
        echo "setup: could not install ${need_apt[*]}" >&2; exit 1; }
fi
[ -x "$UV" ] || UV="$(command -v uv)" || { echo "setup: uv not found" >&2; exit 1; }

# ---------------------------------------------------------------- model library versions
# Same versions as the main venv, so every server unpickles the very same model.
libver() { "$MAIN_PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
SK="scikit-learn==$(libver scikit-learn)"
XGB="xgboost==$(libver xgboost)"
JL="joblib==$(libver joblib)"
NP="numpy==$(libver numpy)"
MODEL_LIBS=("$SK" "$XGB" "$JL" "$NP")
PYVER="$("$MAIN_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# ---------------------------------------------------------------- peers (loose specs)
declare -A SPECS=(
    [flask]="flask gunicorn"
    [fastapi]="fastapi uvicorn[standard]"
    [bentoml]="bentoml"
    [mlflow]="mlflow"
    [litserve]="litserve"
    # mlserver 1.7.1 workers call asyncio.get_event_loop() under uvloop, which uvloop >= 0.22
    # no longer allows: its inference workers die at start with "no current event loop"
    [mlserver]="mlserver mlserver-sklearn mlserver-xgboost uvloop<0.22"
)
PEERS=(${PEERS_ONLY:-flask fastapi bentoml mlflow litserve mlserver})

install_peer() {
    local peer="$1" env="$ENVS/$1" log="$ENVS/$1.log"
    rm -f "$ENVS/$peer.FAILED"
    if [ -x "$env/bin/python" ] && [ -f "$env/.ok" ] && [ -f "$REQ/$peer.txt" ]; then
        echo "[$peer] ok (already installed)"; return 0
    fi
    echo "[$peer] installing ..."
    {
        rm -rf "$env"
        "$UV" venv -q --python "$PYVER" "$env" || return 1
        if [ -f "$REQ/$peer.txt" ]; then
            "$UV" pip install -q --compile-bytecode --python "$env/bin/python" -r "$REQ/$peer.txt" || return 1
        else
            # shellcheck disable=SC2086
            "$UV" pip install -q --compile-bytecode --python "$env/bin/python" ${SPECS[$peer]} "${MODEL_LIBS[@]}" \
                || return 1
            "$UV" pip freeze --python "$env/bin/python" > "$REQ/$peer.txt" || return 1
        fi
        touch "$env/.ok"
    } >"$log" 2>&1
}

pids=()
for peer in "${PEERS[@]}"; do
    ( install_peer "$peer" || { echo "[$peer] FAILED, see $ENVS/$peer.log";
        tail -5 "$ENVS/$peer.log" > "$ENVS/$peer.FAILED"; } ) &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for peer in "${PEERS[@]}"; do
    if [ -f "$ENVS/$peer.FAILED" ]; then echo "[$peer] not available: $(tail -1 "$ENVS/$peer.FAILED")"
    else echo "[$peer] ready"; fi
done

# Bytecode caches, so cold starts are not spent compiling (PYTHONDONTWRITEBYTECODE may be set)
"$MAIN_PY" -m compileall -q -j 0 "$ROOT/.venv/lib" "$ROOT/src" >/dev/null 2>&1 || true

# ---------------------------------------------------------------- models
"$MAIN_PY" "$BENCH/models.py"
