#!/bin/sh
# SPDX-License-Identifier: MIT
# netns.sh PEERDISTD PEERDISTCTL COMMAND [ARGS...] - a small LAN for distributed mode: four
# network namespaces on one bridge (the bridge itself in a fifth), and a peerdistd in mode
# distributed in three of them; COMMAND runs with the environment below, and everything is
# taken down in a trap however it ends.
#
#   host a  10.77.0.1/24  peerdistd      host c  10.77.0.3/24  peerdistd
#   host b  10.77.0.2/24  peerdistd      host d  10.77.0.4/24  no daemon (for a test's own peer)
#
# Each host has eth0 with its IPv4 address and an IPv6 link-local one (no duplicate address
# detection, so it is usable at once), lo up, and no default route: multicast must go out by
# the interface the daemon names. The bridge floods multicast (no snooping). Every daemon has
# its own socket, database, state directory and log under a temporary directory:
#   $PD_NETNS_DIR/X/peerdistd.conf   mode distributed, peer_port 8080, interfaces eth0
#   $PD_NETNS_DIR/X/sock, X/cache.db, X/state/, X/log, X/pid
# Environment for COMMAND: PD_NETNS_DIR, PD_NS_A .. PD_NS_D (namespace names), PD_ADDR_A ..
# PD_ADDR_D (IPv4), PD_ADDR6_A .. PD_ADDR6_D (IPv6 link-local), PD_PEER_PORT, PD_PEERDISTD,
# PD_PEERDISTCTL. A daemon is (re)started with
#   ip netns exec "$PD_NS_X" "$PD_PEERDISTD" --config "$PD_NETNS_DIR/x/peerdistd.conf"
# PD_NETNS_KEEP=1 keeps the temporary directory (logs, databases) for a look afterwards.
# Exit status: COMMAND's; 77 (skipped, with a message) when not root or `ip netns` is not
# usable here; 1 when the network or a daemon could not be set up.
set -eu
SKIP=77
if [ $# -lt 3 ]; then
    echo "usage: netns.sh PEERDISTD PEERDISTCTL COMMAND [ARGS...]" >&2
    exit 2
fi
peerdistd=$1
peerdistctl=$2
shift 2
if [ "$(id -u)" != 0 ]; then
    echo "netns: SKIPPED: not root (network namespaces need root)"
    exit $SKIP
fi
if ! command -v ip >/dev/null 2>&1; then
    echo "netns: SKIPPED: no ip(8) (iproute2)"
    exit $SKIP
fi

# Names unique to this run, short enough for interface names (15 characters).
tag=pd$$
ns_br=$tag-br
nodes="a b c d"
daemons="a b c"
port=8080
dir=$(mktemp -d /tmp/pd-netns.XXXXXX)
made=""

cleanup() {
    status=$?
    trap - EXIT INT TERM
    # The processes still in our namespaces are ours (the daemons, a test's own peer):
    # stopped by their ids, then the namespaces go, and with them the links and the bridge.
    for ns in $made; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -TERM "$pid" 2>/dev/null || true
        done
    done
    for ns in $made; do
        for _ in $(seq 50); do
            [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
            sleep 0.1
        done
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ "$status" != 0 ] && [ "$status" != $SKIP ] && [ -z "${PD_NETNS_KEEP_LOGS:-}" ]; then
        for n in $daemons; do
            if [ -f "$dir/$n/log" ]; then
                echo "---- last lines of host $n's peerdistd log ----"
                tail -n 40 "$dir/$n/log"
            fi
        done
    fi
    if [ -n "${PD_NETNS_KEEP:-}" ]; then
        echo "netns: kept $dir (PD_NETNS_KEEP)" >&2
    else
        rm -rf "$dir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! ip netns add "$ns_br" 2>"$dir/err"; then
    echo "netns: SKIPPED: ip netns is not usable here: $(cat "$dir/err")"
    rm -rf "$dir"
    trap - EXIT
    exit $SKIP
fi
made=$ns_br
ip -n "$ns_br" link set lo up
ip -n "$ns_br" link add br0 type bridge mcast_snooping 0
ip -n "$ns_br" link set br0 up

i=0
for n in $nodes; do
    i=$((i + 1))
    ns=$tag-$n
    ip netns add "$ns"
    made="$made $ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    # One veth pair: v$n on the bridge, eth0 in the host's namespace.
    ip -n "$ns_br" link add "v$n" type veth peer name eth0 netns "$ns"
    ip -n "$ns_br" link set "v$n" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "10.77.0.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    upper=$(echo "$n" | tr a-z A-Z)
    export "PD_NS_$upper=$ns" "PD_ADDR_$upper=10.77.0.$i"
done

# The link-local addresses come with the links; wait until each host has one.
for n in $nodes; do
    for _ in $(seq 50); do
        ip -n "$tag-$n" -6 addr show dev eth0 scope link | grep -q inet6 && break
        sleep 0.1
    done
    a6=$(ip -n "$tag-$n" -6 addr show dev eth0 scope link | sed -n 's/.*inet6 \([^/]*\)\/.*/\1/p')
    export "PD_ADDR6_$(echo "$n" | tr a-z A-Z)=$a6"
done

start_daemon() {
    n=$1
    d=$dir/$n
    : >"$d/log"
    ip netns exec "$tag-$n" "$peerdistd" --config "$d/peerdistd.conf" >>"$d/log" 2>&1 &
    echo $! >"$d/pid"
    for _ in $(seq 300); do
        grep -q 'listening on' "$d/log" && return 0
        kill -0 "$(cat "$d/pid")" 2>/dev/null || break
        sleep 0.1
    done
    echo "netns: peerdistd on host $n did not start:"
    cat "$d/log"
    return 1
}

for n in $daemons; do
    d=$dir/$n
    mkdir -p "$d/state"
    cat >"$d/peerdistd.conf" <<EOF
[peerdistd]
mode = distributed
socket = $d/sock
database = $d/cache.db
state_dir = $d/state
peer_port = $port
interfaces = eth0
log_level = debug
EOF
    start_daemon "$n" || exit 1
done

export PD_NETNS_DIR=$dir PD_PEER_PORT=$port PD_PEERDISTD=$peerdistd PD_PEERDISTCTL=$peerdistctl
echo "netns: hosts a b c (peerdistd) and d on one bridge, 10.77.0.0/24, under $dir"
set +e
"$@"
rc=$?
set -e
exit $rc
