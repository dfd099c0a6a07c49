#!/bin/sh
# Restart papo instances one at a time behind nginx (deploy/nginx.conf): the chat never stops,
# no acknowledged message is lost and nobody is announced leaving and joining again.
#
#   deploy/rolling-restart.sh [--command CMD] [--host HOST] [--timeout S] [--settle S] PORT...
#
# First every instance must answer 200 at http://HOST:PORT/healthz (else nothing is
# restarted: restarting one while another is down could leave nobody to serve). Then,
# for each PORT in turn:
#   1. run CMD with $PORT in its environment (default: systemctl restart "papo@$PORT").
#      CMD must return once the old process has stopped, as `systemctl restart` does;
#      papo stops on SIGTERM by closing its connections with 1001 (going away);
#   2. wait until http://HOST:PORT/healthz answers 200 (the new process serves and its
#      store writes), at most TIMEOUT seconds (default 60; exit 1 if not, leaving the
#      remaining instances alone);
#   3. before the next instance, wait SETTLE seconds (default 2), a breath for the
#      clients that moved. nginx (deploy/nginx.conf) sends new connections to an
#      instance as soon as it accepts them again: it never marks one down.
#
# Why nothing is lost: the clients of the stopped instance reconnect through nginx to
# another one and resume from the last id they saw; a message sent but not acknowledged
# is sent again under its cid and stored once. Why presence does not flap: a stopped
# instance's presence stays in Redis until it has missed its heartbeats for 15 s, and a
# user who is back on any instance by then is announced neither leaving nor joining.
# The README ("Rolling restart") has the whole procedure; tests/test_rolling_restart.py
# runs this script.
set -eu

command='systemctl restart "papo@$PORT"'
host=127.0.0.1
timeout=60
settle=2

usage() {
    sed -n '2,/^set -eu/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case $1 in
        --command) command=$2; shift 2 ;;
        --host) host=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --settle) settle=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        --) shift; break ;;
        -*) echo "rolling-restart: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) break ;;
    esac
done
if [ $# -eq 0 ]; then
    usage >&2
    exit 2
fi
command -v curl >/dev/null || { echo "rolling-restart: needs curl" >&2; exit 2; }

healthy() {
    curl --silent --fail --output /dev/null --max-time 5 "http://$host:$1/healthz"
}

say() {
    echo "rolling-restart: $*"
}

for port in "$@"; do
    if ! healthy "$port"; then
        echo "rolling-restart: the instance on port $port is not healthy; restarting none" >&2
        exit 1
    fi
done

first=yes
for port in "$@"; do
    if [ -z "$first" ]; then
        sleep "$settle"  # nginx takes the instance just restarted back first
    fi
    first=
    say "restarting the instance on port $port"
    PORT=$port sh -c "$command"
    started=$(date +%s)
    until healthy "$port"; do
        if [ $(($(date +%s) - started)) -ge "$timeout" ]; then
            echo "rolling-restart: port $port is not healthy ${timeout} s after its restart;" \
                "the instances after it were not restarted" >&2
            exit 1
        fi
        sleep 0.2
    done
    say "port $port is back ($(($(date +%s) - started)) s)"
done
say "every instance restarted"
