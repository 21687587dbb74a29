#!/usr/bin/env bash
# Start, stop, wait for and reset the AWS emulators harden is tested against, as host
# processes on 127.0.0.1 (no Docker). The venvs are made by `make emulators`.
#
#   localstack/emulator.sh start moto|localstack PORT   # prints the PID, writes .harden-emulators/KIND-PORT.pid
#   localstack/emulator.sh wait  moto|localstack PORT   # until healthy (60 s at most)
#   localstack/emulator.sh reset moto|localstack PORT   # empty state (LocalStack community: restart)
#   localstack/emulator.sh stop  moto|localstack PORT
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cmd="${1:?usage: emulator.sh start|wait|reset|stop moto|localstack PORT}"
kind="${2:?emulator kind: moto or localstack}"
port="${3:?port}"
rundir="$root/.harden-emulators"
pidfile="$rundir/$kind-$port.pid"
logfile="$rundir/$kind-$port.log"

health_url() {
  case "$kind" in
    moto) echo "http://127.0.0.1:$port/moto-api/" ;;
    localstack) echo "http://127.0.0.1:$port/_localstack/health" ;;
    *) echo "unknown emulator $kind: expected moto or localstack" >&2; exit 1 ;;
  esac
}

start() {
  mkdir -p "$rundir"
  if port_open; then echo "port $port on 127.0.0.1 is already in use" >&2; exit 1; fi
  case "$kind" in
    moto)
      [ -x "$root/.venv-moto/bin/moto_server" ] || { echo "moto is not installed: run make emulators" >&2; exit 1; }
      setsid "$root/.venv-moto/bin/moto_server" -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 &
      ;;
    localstack)
      [ -x "$root/.venv-localstack/bin/python" ] || { echo "LocalStack is not installed: run make emulators" >&2; exit 1; }
      GATEWAY_LISTEN="127.0.0.1:$port" SERVICES="ec2,sts,s3,config,iam,kms,logs" \
        setsid "$root/.venv-localstack/bin/python" -m localstack.runtime.main >"$logfile" 2>&1 &
      ;;
    *) health_url ;;
  esac
  echo $! >"$pidfile"
  cat "$pidfile"
}

wait_healthy() {
  local url; url="$(health_url)"
  for _ in $(seq 1 120); do
    if curl -sf -o /dev/null "$url"; then return 0; fi
    sleep 0.5
  done
  echo "$kind on port $port did not become healthy; log: $logfile" >&2
  tail -20 "$logfile" >&2 || true
  exit 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

stop() {
  [ -f "$pidfile" ] || return 0
  local pid; pid="$(cat "$pidfile")"
  # setsid made the emulator a process-group leader: end the whole group, then wait
  # until nothing of it is left and the port is free, so a restart can bind it.
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do port_open || break; sleep 0.25; done
  rm -f "$pidfile"
}

case "$cmd" in
  start) start ;;
  wait) wait_healthy ;;
  stop) stop ;;
  reset)
    case "$kind" in
      moto) curl -sf -X POST "http://127.0.0.1:$port/moto-api/reset" >/dev/null ;;
      # LocalStack community has no state reset; a restart takes about 2 s.
      localstack) stop; start >/dev/null; wait_healthy ;;
    esac
    ;;
  *) echo "unknown command $cmd" >&2; exit 1 ;;
esac
