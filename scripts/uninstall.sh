#!/bin/sh
# Undo scripts/install.sh (called by `make uninstall`).
#
# Stops and disables the service, removes the unit, its tmpfiles.d and sysusers.d entries,
# the bundled rulesets and the docs. The config (/etc/log-auditor), the state
# (/var/lib/log-auditor: the store, its key and the reports: audit evidence) and the
# system user stay, unless PURGE=1. The virtual environment stays too: it was created by
# hand (`rm -rf /opt/log-auditor` removes it).
#
# Variables: PREFIX, DESTDIR, UNITDIR, TMPFILESDIR, SYSUSERSDIR as for install.sh;
# PURGE=1 also deletes the config, the state and the user.
set -eu

PREFIX=${PREFIX:-/opt/log-auditor}
DESTDIR=${DESTDIR:-}
UNITDIR=${UNITDIR:-/etc/systemd/system}
TMPFILESDIR=${TMPFILESDIR:-/etc/tmpfiles.d}
SYSUSERSDIR=${SYSUSERSDIR:-/etc/sysusers.d}
PURGE=${PURGE:-0}
CONFDIR=/etc/log-auditor
STATEDIR=/var/lib/log-auditor
SERVICE_USER=log-auditor

PREFIX=${PREFIX%/}
DESTDIR=${DESTDIR%/}
LIVE=1
[ -n "$DESTDIR" ] && LIVE=0

say() { printf '%s\n' "$*"; }

if [ "$LIVE" = 1 ] && [ "$(id -u)" != 0 ]; then
    printf 'uninstall.sh: run as root (sudo make uninstall), or set DESTDIR\n' >&2
    exit 1
fi

if [ "$LIVE" = 1 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now log-auditor.service 2>/dev/null || true
fi

rm -f "$DESTDIR$UNITDIR/log-auditor.service" \
    "$DESTDIR$TMPFILESDIR/log-auditor.conf" \
    "$DESTDIR$SYSUSERSDIR/log-auditor.conf"
rm -rf "$DESTDIR$UNITDIR/log-auditor.service.d"
rm -rf "$DESTDIR$PREFIX/share/log-auditor" "$DESTDIR$PREFIX/share/doc/log-auditor"

if [ "$LIVE" = 1 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi

if [ "$PURGE" = 1 ]; then
    # DynamicUser= layouts keep the state under /var/lib/private; remove both.
    rm -rf "$DESTDIR$CONFDIR" "$DESTDIR$STATEDIR" "$DESTDIR/var/lib/private/log-auditor"
    if [ "$LIVE" = 1 ] && id -u "$SERVICE_USER" >/dev/null 2>&1; then
        userdel "$SERVICE_USER" 2>/dev/null || say "could not remove user $SERVICE_USER"
    fi
    say "purged $CONFDIR, $STATEDIR (store, key, reports) and the $SERVICE_USER user"
else
    say "kept $CONFDIR (config) and $STATEDIR (store, key, reports); PURGE=1 removes them"
fi
say "uninstalled log-auditor from ${DESTDIR:-/}; the venv $PREFIX is left in place"
