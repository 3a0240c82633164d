#!/bin/sh
# SPDX-License-Identifier: MIT
# deb_roundtrip.sh - the Debian packages from build to purge, on this machine: `make deb`,
# `apt-get install ./build/deb/*.deb`, the system user and directories, the units checked by
# systemd-analyze, then peerdistd started the way peerdistd.socket and peerdistd.service
# start it, without systemd as PID 1: systemd-socket-activate listens on
# /run/peerdist/peerdistd.sock (0666, as SocketMode=) and execs setpriv, which execs
# peerdistd as user peerdist in the same process, so LISTEN_PID matches and the daemon
# serves the socket it was handed. A client round trip (status, publish, inject, get, also
# as an unprivileged user), the manual pages, pkg-config and examples/flush.c against the
# installed header and library; then `apt-get purge`, which must leave none of the
# packages' files or directories behind. The system user and group stay after a purge, as
# Debian leaves them; this test then deletes them if it created them, since an existing
# group peerdist changes what a daemon started by root does (it takes that group for its
# files), and so what later tests on this machine see.
# Purging happens in a trap, so a failure anywhere still removes the packages.
#
# Needs root and apt; skipped otherwise, and when peerdistd is installed already (the test
# would remove an administrator's installation). Usage: tests/deb_roundtrip.sh [--no-build]
# (--no-build: use the .deb files already in build/deb/).
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)
debdir=$src/build/deb
sock=/run/peerdist/peerdistd.sock

skip() {
    echo "deb_roundtrip: skipped: $*"
    exit 0
}
fail() {
    echo "deb_roundtrip: FAILED: $*" >&2
    exit 1
}
[ "$(id -u)" = 0 ] || skip "needs root (it installs and purges packages)"
command -v apt-get >/dev/null 2>&1 || skip "needs apt-get"
command -v systemd-socket-activate >/dev/null 2>&1 || skip "needs systemd-socket-activate"
for p in peerdistd libpeerdist1 libpeerdist-dev; do
    if dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'installed'; then
        skip "$p is installed already; purge it first (this test purges what it installs)"
    fi
done

# A peerdistd that has files open in the packages' directories (one run by hand with the
# built-in paths) would lose them under the test: then it does not run.
for pid in $(pgrep -x peerdistd || true); do
    for fd in "/proc/$pid/fd"/*; do
        case $(readlink "$fd" 2>/dev/null) in
        /var/lib/peerdist/* | /var/cache/peerdist/* | /run/peerdist/*)
            skip "peerdistd $pid has $(readlink "$fd") open" ;;
        esac
    done
done

if [ "${1:-}" != --no-build ]; then
    make deb
fi
debs=$(ls "$debdir"/*.deb 2>/dev/null) || fail "no .deb files in $debdir"
packages=$(for d in $debs; do dpkg-deb -f "$d" Package; done | tr '\n' ' ')

user_existed=
group_existed=
getent passwd peerdist >/dev/null && user_existed=1
getent group peerdist >/dev/null && group_existed=1
tmp=$(mktemp -d /tmp/pdroundtrip.XXXXXX)
chmod 0755 "$tmp"
daemon_pid=
purged=
apt_get() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q "$@"
}
stop_daemon() {
    if [ -n "$daemon_pid" ]; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
        daemon_pid=
    fi
}
purge() {
    stop_daemon
    if [ -z "$purged" ]; then
        purged=1
        # shellcheck disable=SC2086
        apt_get purge $packages >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; return 1; }
    fi
}
remove_user() {
    if [ -z "$user_existed" ] && getent passwd peerdist >/dev/null; then
        userdel peerdist || return 1
    fi
    if [ -z "$group_existed" ] && getent group peerdist >/dev/null; then
        groupdel peerdist || return 1
    fi
}
# Directories of the packages' that were there before the install, renamed aside (see
# below); each is renamed back, or, if that fails, left where it is and named.
aside=
restore_aside() {
    rc=0
    for dir in $aside; do
        if [ -e "$dir" ] || ! mv -T "$dir.roundtrip-aside" "$dir"; then
            echo "deb_roundtrip: what was in $dir before the test is in $dir.roundtrip-aside" >&2
            rc=1
        fi
    done
    return $rc
}
cleanup() {
    status=$?
    purge || status=1
    remove_user || status=1
    restore_aside || status=1
    if [ "$status" != 0 ] && [ -f "$tmp/daemon.log" ]; then
        echo "--- peerdistd's log" >&2
        cat "$tmp/daemon.log" >&2
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# A daemon run by hand with the built-in paths (as root, say) before the packages were
# installed leaves these behind, with files the service's user may not read (a server secret
# of root's): the installed daemon would fail on them, as it would on such a machine. They
# are renamed aside (on their own filesystem: nothing is copied), shown with their times (to
# tell which run made them), and renamed back after the purge.
for dir in /var/lib/peerdist /var/cache/peerdist /run/peerdist; do
    [ -e "$dir" ] || continue
    [ ! -e "$dir.roundtrip-aside" ] || fail "$dir.roundtrip-aside exists (from an earlier run?)"
    echo "deb_roundtrip: $dir exists before the install; renamed aside until the purge:" >&2
    ls -la --time-style=full-iso "$dir" >&2 || true
    mv -T "$dir" "$dir.roundtrip-aside"
    aside="$aside $dir"
done

# ---- install
# shellcheck disable=SC2086
apt_get install $debs >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "apt-get install"; }
for f in /usr/sbin/peerdistd /usr/bin/peerdistctl /etc/peerdist/peerdistd.conf \
    /lib/systemd/system/peerdistd.service /lib/systemd/system/peerdistd.socket \
    /usr/lib/sysusers.d/peerdist.conf /usr/lib/tmpfiles.d/peerdist.conf /usr/include/peerdist.h \
    /usr/share/doc/peerdist/README.md; do
    [ -e "$f" ] || fail "$f is not installed"
done
dpkg-query -W -f='${Conffiles}\n' peerdistd | grep -q ' /etc/peerdist/peerdistd.conf ' ||
    fail "/etc/peerdist/peerdistd.conf is not a conffile"
getent passwd peerdist >/dev/null || fail "the system user peerdist was not created"
getent group peerdist >/dev/null || fail "the system group peerdist was not created"

# ---- directories, as the unit (or tmpfiles.d without systemd) makes them
systemd-tmpfiles --create peerdist.conf
mode() { stat -c '%a %U:%G' "$1"; }
[ "$(mode /run/peerdist)" = "755 peerdist:peerdist" ] || fail "/run/peerdist is $(mode /run/peerdist)"
[ "$(mode /var/cache/peerdist)" = "750 peerdist:peerdist" ] ||
    fail "/var/cache/peerdist is $(mode /var/cache/peerdist)"
[ "$(mode /var/lib/peerdist)" = "700 peerdist:peerdist" ] ||
    fail "/var/lib/peerdist is $(mode /var/lib/peerdist)"

# ---- the installed units, their man: links included
systemd-analyze verify /lib/systemd/system/peerdistd.socket /lib/systemd/system/peerdistd.service
grep -q '^ExecStart=/usr/sbin/peerdistd$' /lib/systemd/system/peerdistd.service ||
    fail "ExecStart is not the installed daemon without flags"
systemd-analyze security --offline=yes /lib/systemd/system/peerdistd.service | tail -n 1

# ---- the daemon, started as the units start it
rm -f "$sock"
systemd-socket-activate -l "$sock" \
    setpriv --reuid peerdist --regid peerdist --init-groups /usr/sbin/peerdistd 2>"$tmp/daemon.log" &
daemon_pid=$!
# systemd-socket-activate makes the socket 0644 and execs at the first connection: give the
# socket what peerdistd.socket gives it (SocketUser=, SocketGroup=, SocketMode=) before that.
for _ in $(seq 100); do
    [ -S "$sock" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || fail "systemd-socket-activate exited"
    sleep 0.1
done
[ -S "$sock" ] || fail "systemd-socket-activate did not create $sock"
chown peerdist:peerdist "$sock"
chmod 0666 "$sock"
up=
for _ in $(seq 100); do
    if peerdistctl status >/dev/null 2>&1; then
        up=1
        break
    fi
    kill -0 "$daemon_pid" 2>/dev/null || fail "peerdistd exited"
    sleep 0.1
done
[ -n "$up" ] || fail "peerdistd did not answer on $sock within 10 s"
# The socket it serves is the one it was handed (socket activation), not one of its own,
# and it takes the socket as it is.
grep -q 'socket activation: listening on the socket handed over' "$tmp/daemon.log" ||
    fail "peerdistd's log does not say it serves the socket handed over"
inode=$(stat -c '%i' "$sock")
[ "$(stat -c '%a %U:%G' "$sock")" = "666 peerdist:peerdist" ] ||
    fail "$sock is $(stat -c '%a %U:%G' "$sock") (peerdistd changed it?)"
[ "$(ps -o user= -p "$daemon_pid")" = peerdist ] || fail "peerdistd does not run as user peerdist"

# ---- a client round trip, as root and as an unprivileged user
peerdistctl status
head -c 300000 /dev/urandom >"$tmp/content"
tag=00112233445566778899aabbccddeeff
peerdistctl publish "$tmp/content" -o "$tmp/content.ci"
if peerdistctl get --ci "$tmp/content.ci" -o "$tmp/copy" 2>/dev/null && cmp -s "$tmp/content" "$tmp/copy"; then
    fail "get found the content before it was injected"
fi
peerdistctl inject "$tmp/content" --ci "$tmp/content.ci" --tag "$tag"
rm -f "$tmp/copy"
peerdistctl get --ci "$tmp/content.ci" -o "$tmp/copy"
cmp "$tmp/content" "$tmp/copy" || fail "get returned other bytes than were injected"
chmod 0644 "$tmp/content.ci"
mkdir "$tmp/nobody" && chown nobody "$tmp/nobody"
as_nobody() { setpriv --reuid nobody --regid nogroup --clear-groups "$@"; }
as_nobody peerdistctl status >/dev/null || fail "an unprivileged user cannot reach the daemon"
as_nobody peerdistctl get --ci "$tmp/content.ci" -o "$tmp/nobody/copy" ||
    fail "an unprivileged user cannot read cached content"
cmp "$tmp/content" "$tmp/nobody/copy" || fail "an unprivileged user got other bytes"
peerdistctl flush --tag "$tag"
# The database and data files belong to the service and are not for other users.
[ "$(stat -c '%U:%G' /var/cache/peerdist/cache.db)" = peerdist:peerdist ] ||
    fail "cache.db is owned by $(stat -c '%U:%G' /var/cache/peerdist/cache.db)"
case $(stat -c '%A' /var/cache/peerdist/cache.db) in
*---) ;; # nothing for others
*) fail "cache.db is $(stat -c '%A' /var/cache/peerdist/cache.db)" ;;
esac

# ---- manual pages, pkg-config, the example against the installed header and library
for page in 8/peerdistd 5/peerdistd.conf 1/peerdistctl 3/peerdist; do
    man -w "${page%%/*}" "${page#*/}" >/dev/null || fail "man does not find ${page#*/}(${page%%/*})"
    warnings=$(MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 "${page%%/*}" "${page#*/}" 2>&1 >/dev/null)
    [ -z "$warnings" ] || fail "man ${page%%/*} ${page#*/} warns: $warnings"
done
# shellcheck disable=SC2046
cc -Wall -Werror -o "$tmp/flush" examples/flush.c $(pkg-config --cflags --libs peerdist)
"$tmp/flush"
ldd "$tmp/flush" | grep -q 'libpeerdist.so.1 => /\(usr/\)\?lib/' || fail "flush is not linked to the installed library"

# ---- stop, as systemctl stop does: the daemon must leave the socket it was handed
stop_daemon
[ -S "$sock" ] || fail "peerdistd removed the socket it was handed"
[ "$(stat -c '%i' "$sock")" = "$inode" ] || fail "peerdistd replaced the socket it was handed"

# ---- purge: nothing of the packages may be left
purge
for f in /usr/sbin/peerdistd /usr/bin/peerdistctl /etc/peerdist /var/cache/peerdist \
    /var/lib/peerdist /run/peerdist /lib/systemd/system/peerdistd.service \
    /lib/systemd/system/peerdistd.socket /usr/lib/sysusers.d/peerdist.conf \
    /usr/lib/tmpfiles.d/peerdist.conf /usr/include/peerdist.h /usr/share/doc/peerdist \
    /usr/share/man/man8/peerdistd.8.gz; do
    [ ! -e "$f" ] || fail "$f is left after purge"
done
getent passwd peerdist >/dev/null || fail "purge removed the system user (Debian keeps it)"
for p in $packages; do
    if dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'installed\|config-files'; then
        fail "$p is still known to dpkg after purge"
    fi
done
echo "deb_roundtrip: passed (built, installed, served over an activated socket, purged clean)"
