#!/usr/bin/env bash
# `make demo`: the whole pipeline, offline, on the bundled real candles (tests/data).
#   private influxd under var/demo -> replay exchange (data shifted to end now) -> init ->
#   backfill -> detect-gaps -> train -> predict -> export -> status, and nginx on
#   127.0.0.1:8080 serving the export dir and the dashboard page (at /). Safe to re-run. `make demo-stop` stops it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO="$ROOT/var/demo"
BIN="$ROOT/.venv/bin"
INFLUX_PORT=${DEMO_INFLUX_PORT:-18086}
REPLAY_PORT=${DEMO_REPLAY_PORT:-18087}
NGINX_PORT=${DEMO_NGINX_PORT:-8080}

stop_all() {
    for name in nginx replay influxd; do
        pidfile="$DEMO/$name.pid"
        if [ -f "$pidfile" ]; then
            pid=$(cat "$pidfile")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            rm -f "$pidfile"
        fi
    done
}

if [ "${1:-}" = "stop" ]; then
    stop_all
    echo "demo stopped (data kept in $DEMO; rm -rf it to start from scratch)"
    exit 0
fi

wait_http() {  # url, what
    for _ in $(seq 100); do
        if "$BIN/python" - "$1" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1)
PY
        sleep 0.1
    done
    echo "demo: $2 did not come up at $1" >&2
    return 1
}

stop_all   # re-running is safe: start from a clean set of processes, keep the data
mkdir -p "$DEMO/nginx" "$DEMO/www" "$DEMO/state"

echo "== influxd on 127.0.0.1:$INFLUX_PORT (data in $DEMO/influxdb)"
"$BIN/python" -m coinpredict.replay.influxd "$DEMO/influxdb" "$INFLUX_PORT" > "$DEMO/influxd.pid"

echo "== replay exchange on 127.0.0.1:$REPLAY_PORT (bundled real Binance candles, shifted to end now)"
nohup "$BIN/coinpredict" replay serve --data "$ROOT/tests/data" --port "$REPLAY_PORT" \
    --shift-to-now > "$DEMO/replay.log" 2>&1 &
echo $! > "$DEMO/replay.pid"
wait_http "http://127.0.0.1:$REPLAY_PORT/api/v3/ping" "the replay exchange"

export COINPREDICT_CONFIG=""
export COINPREDICT_INFLUX_URL="http://127.0.0.1:$INFLUX_PORT"
export COINPREDICT_EXCHANGE_URL="http://127.0.0.1:$REPLAY_PORT"
export COINPREDICT_SYMBOLS="BTC/USDT,ETH/USDT"
export COINPREDICT_TIMEFRAMES="1h,1d"
export COINPREDICT_STATE_DIR="$DEMO/state"
export COINPREDICT_EXPORT_DIR="$DEMO/www"

cp="$BIN/coinpredict"
echo "== coinpredict init";         "$cp" init
echo "== coinpredict backfill";     "$cp" backfill
echo "== coinpredict detect-gaps --refill"; "$cp" detect-gaps --refill
echo "== coinpredict train --promote"; "$cp" train --promote || echo "(promotion refused: the naive champion keeps serving)"
echo "== coinpredict predict";      "$cp" predict
echo "== coinpredict export";       "$cp" export
echo "== coinpredict cycle -t 1h (what the hourly timer runs: ingest, predict, export in one process)"
"$cp" cycle -t 1h
echo "== coinpredict status"
status_rc=0; "$cp" status || status_rc=$?

echo "== nginx on 127.0.0.1:$NGINX_PORT serving $DEMO/www and the page (coinpredict/publish/web)"
bash "$ROOT/deploy/install-nginx.sh" --listen "127.0.0.1:$NGINX_PORT" --server-name localhost \
    --export-dir "$DEMO/www" --cors-origin '*' --output "$DEMO/nginx/site.conf" > /dev/null
user_line=""
[ "$(id -u)" = "0" ] && user_line="user root;"
cat > "$DEMO/nginx/nginx.conf" <<CONF
$user_line
worker_processes 1;
pid $DEMO/nginx.pid;
error_log $DEMO/nginx/error.log warn;
events { worker_connections 64; }
http {
    access_log $DEMO/nginx/access.log;
    client_body_temp_path $DEMO/nginx/body;
    proxy_temp_path $DEMO/nginx/proxy;
    fastcgi_temp_path $DEMO/nginx/fastcgi;
    uwsgi_temp_path $DEMO/nginx/uwsgi;
    scgi_temp_path $DEMO/nginx/scgi;
    include $DEMO/nginx/site.conf;
}
CONF
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
"$NGINX" -p "$DEMO/nginx" -c "$DEMO/nginx/nginx.conf" -e "$DEMO/nginx/error.log"
wait_http "http://127.0.0.1:$NGINX_PORT/manifest.json" "nginx"

cat <<MSG

Demo is up. The dashboard page:
  http://127.0.0.1:$NGINX_PORT/
The JSON it reads:
  http://127.0.0.1:$NGINX_PORT/manifest.json
  http://127.0.0.1:$NGINX_PORT/status.json
  http://127.0.0.1:$NGINX_PORT/prediction_BTC_USDT_1h.json
  http://127.0.0.1:$NGINX_PORT/history_ETH_USDT_1d.json
Try: curl -s http://127.0.0.1:$NGINX_PORT/prediction_BTC_USDT_1h.json | head -40
The same environment drives the CLI (see scripts/demo.sh), e.g. COINPREDICT_INFLUX_URL=http://127.0.0.1:$INFLUX_PORT
Stop everything with: make demo-stop
MSG
# status exit 1 (stale/degraded) is still a working demo; 2/3 mean something is wrong
[ "$status_rc" -le 1 ] || exit "$status_rc"
