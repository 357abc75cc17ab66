#!/usr/bin/env bash
# Real-browser check of the dashboard: builds and starts the service on a free port with its own
# embedded PostgreSQL, seeds data through the HTTP API, loads every page in headless Chromium,
# checks the DOM, and saves screenshots under target/browser-screenshots/; then checks a scrape of
# /metrics (with the seeded gate policy's information series) with `promtool check metrics`.
# Exits non-zero on any failed check. Needs: cargo, python3, curl; installs Debian's chromium
# and prometheus (promtool) when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

say() { echo "== browser: $*"; }
FAILED=0
fail() { echo "FAIL: $*" >&2; FAILED=1; }

CHROMIUM=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$CHROMIUM" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "chromium is not installed and this is not root: install it (apt-get install chromium)" >&2
    exit 1
  fi
  say "installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  CHROMIUM=$(command -v chromium)
fi
for tool in python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

say "cargo build"
cargo build --quiet --locked --bin infoaudit

WORK=$(mktemp -d /tmp/infoaudit-browser.XXXXXX)
SHOTS="$ROOT/target/browser-screenshots"
rm -rf "$SHOTS"
mkdir -p "$SHOTS"
SERVER_PID=""

cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -INT "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server did not stop on SIGINT; killing it" >&2
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ] || [ "$FAILED" != 0 ]; then
    echo "---- server log (tail) ----" >&2
    tail -n 40 "$WORK/server.log" >&2 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
say "starting the service on $BASE (data in $WORK/data)"
# No DATABASE_URL: the binary runs its own embedded PostgreSQL under the data dir.
env -u DATABASE_URL RUST_LOG=warn target/debug/infoaudit serve --addr "127.0.0.1:$PORT" \
  --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

ready=0
for _ in $(seq 1 240); do
  if curl -fsS -m 2 "$BASE/readyz" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.5
done
if [ "$ready" != 1 ]; then
  echo "the service did not become ready" >&2
  exit 1
fi

say "seeding through the API"
IDS=$(timeout 600 python3 tests/browser/seed.py "$BASE")
echo "$IDS"
get() { python3 -c 'import json, sys; v = json.loads(sys.argv[1]); print(eval("v" + sys.argv[2]))' "$IDS" "$1"; }
FRAUD_B1=$(get '["fraud"][0]')
FRAUD_LAST=$(get '["fraud"][-1]')
TAGGER=$(get '["tagger"]')
SPECIES=$(get '["species"]')
REGIONS_V1=$(get '["regions_v1"]')
REGIONS_V2=$(get '["regions_v2"]')
INCIDENT=$(get '["incident"]')

chrome() {
  timeout 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --no-first-run --no-default-browser-check --hide-scrollbars --mute-audio \
    --user-data-dir="$WORK/chrome" "$@" 2>>"$WORK/chrome.log"
}

# check NAME PATH NEED_SVG [extra required strings...]
check() {
  local name=$1 path=$2 need_svg=$3
  shift 3
  local dom="$WORK/$name.html"
  if ! chrome --dump-dom "$BASE$path" >"$dom"; then
    fail "$name: chromium could not load $path"
    return
  fi
  if ! grep -q '</html>' "$dom"; then fail "$name: no document loaded from $path"; fi
  if [ "$need_svg" = 1 ] && ! grep -q '<svg' "$dom"; then fail "$name: no chart <svg> on $path"; fi
  if grep -qiE 'Something went wrong|"type": *"|Internal server error|<h1>Not found' "$dom"; then
    fail "$name: error text on $path"
  fi
  if grep -qi '<script' "$dom"; then fail "$name: a <script> element is in the DOM of $path"; fi
  local want
  for want in "$@"; do
    grep -qF -- "$want" "$dom" || fail "$name: \"$want\" missing on $path"
  done
  if ! chrome --screenshot="$SHOTS/$name.png" --window-size=1400,1000 "$BASE$path" >/dev/null; then
    fail "$name: screenshot failed"
  elif [ ! -s "$SHOTS/$name.png" ]; then
    fail "$name: empty screenshot"
  fi
  echo "checked $name ($path)"
}

ESCAPED='&lt;script&gt;alert(1)&lt;/script&gt;'
say "loading pages in $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
check models / 0 'fraud-detector' 'image-tagger' 'species' '(bits)' 'API docs'
check model '/models/fraud-detector' 1 'semantic_mi (bits)' 'production → v2' 'candidate → v3' 'Gate decisions' 'policy release'
check model-nmi '/models/fraud-detector?metric=shannon_mi.nmi' 1 'shannon_mi.nmi (ratio)'
check batch "/batches/$FRAUD_B1" 1 "$ESCAPED" '&lt;script&gt;alert(2)&lt;/script&gt;' 'Confusion matrix' 'R(G) curve' 'Most misleading samples' ' bits'
check batch-v3 "/batches/$FRAUD_LAST" 1 "$ESCAPED" 'Information per class'
check batch-multilabel "/batches/$TAGGER" 1 'Information per label' 'Efficiency per label' 'outdoor'
check batch-species "/batches/$SPECIES" 1 'Parus major' 'Confusion matrix'
check model-tagger '/models/image-tagger' 1 'image-tagger'
check batch-segments "/batches/$REGIONS_V1" 1 '<h2>Segments</h2>' 'apac' 'Contribution'
check batch-labels-later "/batches/$REGIONS_V2" 1 '<h2>Segments</h2>' 'eu'
check model-segments '/models/regions' 1 'Segments: v1 → v2' 'apac'
check batch-labels "/batches/$REGIONS_V2" 1 '<h2>Labels</h2>' '300 of 600 samples labelled' 'the jobs use the 300 labels stored then'
check incidents '/incidents' 0 'strict' 'firing' 'Incidents'
check incident "/incidents/$INCIDENT" 0 'Rules of the last decision' 'shannon_mi' 'No message was sent'
check models-headline '/' 0 'Implied MI' 'regions'

say "404 pages"
for path in /models/no-such-model /batches/00000000-0000-0000-0000-000000000000 /batches/nope; do
  code=$(curl -s -o "$WORK/404.html" -w '%{http_code} %{content_type}' -m 10 "$BASE$path")
  case "$code" in
    "404 text/html"*) grep -q 'There is no' "$WORK/404.html" || fail "$path: the 404 page does not say what is missing" ;;
    *) fail "$path answered \"$code\", not a 404 HTML page" ;;
  esac
done
chrome --screenshot="$SHOTS/not-found.png" --window-size=1400,600 "$BASE/models/no-such-model" >/dev/null \
  || fail "not-found: screenshot failed"

say "promtool check metrics on a live scrape"
PROMTOOL=$(command -v promtool || true)
if [ -z "$PROMTOOL" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "promtool is not installed and this is not root: install it (apt-get install prometheus)" >&2
    exit 1
  fi
  say "installing prometheus (for promtool)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  PROMTOOL=$(command -v promtool)
fi
if ! curl -fsS -m 30 "$BASE/metrics" >"$WORK/metrics.txt"; then
  fail "/metrics could not be scraped"
else
  # The seeded gate policy `release` makes information series: at least one with an interval.
  grep -q '^infoaudit_information_value{model="fraud-detector",' "$WORK/metrics.txt" ||
    fail "no information series for fraud-detector in /metrics"
  grep -q '^infoaudit_information_ci_low{' "$WORK/metrics.txt" ||
    fail "no information interval in /metrics"
  grep -q '^infoaudit_information_export_up 1$' "$WORK/metrics.txt" ||
    fail "infoaudit_information_export_up is not 1"
  # promtool exits non-zero on a parse error; lint problems are printed with exit 0, so any
  # output at all counts as a failure.
  if ! "$PROMTOOL" check metrics <"$WORK/metrics.txt" >"$WORK/promtool.txt" 2>&1; then
    cat "$WORK/promtool.txt" >&2
    fail "promtool check metrics failed"
  elif [ -s "$WORK/promtool.txt" ]; then
    cat "$WORK/promtool.txt" >&2
    fail "promtool check metrics reported problems"
  else
    echo "promtool check metrics: clean ($(grep -c '^infoaudit_information_value{' "$WORK/metrics.txt") information series)"
  fi
fi

say "stopping the service (SIGINT)"
kill -INT "$SERVER_PID"
stopped=0
for _ in $(seq 1 60); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then stopped=1; break; fi
  sleep 0.5
done
if [ "$stopped" = 1 ]; then
  wait "$SERVER_PID" || fail "the service exited non-zero after SIGINT"
  SERVER_PID=""
else
  fail "the service did not stop within 30 s of SIGINT"
fi

if [ "$FAILED" != 0 ]; then
  echo "browser checks failed; screenshots in $SHOTS" >&2
  exit 1
fi
say "all pages passed; screenshots in $SHOTS"
