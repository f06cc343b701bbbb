#!/bin/sh
# Install log-auditor as a systemd service (called by `make install`).
#
# First install the package into its own virtual environment:
#     python3 -m venv /opt/log-auditor
#     /opt/log-auditor/bin/pip install .
# then, as root:
#     make install
#
# What it does: creates the log-auditor system user, /etc/log-auditor (0750) with a
# commented config.toml (0640) if there is none, /var/lib/log-auditor (0700) and its
# reports directory, installs the unit, its tmpfiles.d and sysusers.d entries, the bundled
# rulesets and the docs, runs `systemctl daemon-reload` when systemd is running, and
# prints how to enable the service. It never overwrites an existing config.
#
# Variables:
#   PREFIX   the virtual environment (default /opt/log-auditor); the unit is rewritten
#            to start $PREFIX/bin/log-auditor.
#   DESTDIR  stage into this root instead of the live system (packaging, tests): no user
#            is created, nothing is chowned, systemctl is not run.
#   UNITDIR, TMPFILESDIR, SYSUSERSDIR  where the systemd files go (default: under /etc).
set -eu

PREFIX=${PREFIX:-/opt/log-auditor}
DESTDIR=${DESTDIR:-}
UNITDIR=${UNITDIR:-/etc/systemd/system}
TMPFILESDIR=${TMPFILESDIR:-/etc/tmpfiles.d}
SYSUSERSDIR=${SYSUSERSDIR:-/etc/sysusers.d}
CONFDIR=/etc/log-auditor
STATEDIR=/var/lib/log-auditor
SERVICE_USER=log-auditor
DEFAULT_PREFIX=/opt/log-auditor

SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
case "$PREFIX" in
/*) ;;
*) echo "install.sh: PREFIX must be an absolute path, got '$PREFIX'" >&2; exit 2 ;;
esac
PREFIX=${PREFIX%/}
DESTDIR=${DESTDIR%/}
LIVE=1
[ -n "$DESTDIR" ] && LIVE=0

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

if [ "$LIVE" = 1 ] && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo make install), or set DESTDIR to stage the files"
fi
BIN="$PREFIX/bin/log-auditor"
if [ ! -x "$DESTDIR$BIN" ] && [ ! -x "$BIN" ]; then
    if [ "$LIVE" = 1 ]; then
        die "$BIN not found. First: python3 -m venv $PREFIX && $PREFIX/bin/pip install $SRCDIR"
    fi
    say "note: $BIN does not exist (yet); staging anyway"
fi

# --- the service user -----------------------------------------------------------------
install -d -m 0755 "$DESTDIR$SYSUSERSDIR"
install -m 0644 "$SRCDIR/systemd/log-auditor.sysusers" "$DESTDIR$SYSUSERSDIR/log-auditor.conf"
if [ "$LIVE" = 1 ] && ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers "$SYSUSERSDIR/log-auditor.conf"
    elif command -v useradd >/dev/null 2>&1; then
        useradd --system --user-group --home-dir "$STATEDIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "log-auditor access-log auditor" "$SERVICE_USER"
    else
        die "cannot create the system user $SERVICE_USER (no systemd-sysusers, no useradd)"
    fi
    say "created system user $SERVICE_USER"
fi

own() {  # own USER:GROUP PATH: only on the live system
    if [ "$LIVE" = 1 ]; then chown "$1" "$2"; fi
}

# --- directories and the config -------------------------------------------------------
install -d -m 0750 "$DESTDIR$CONFDIR"
own "root:$SERVICE_USER" "$DESTDIR$CONFDIR"
install -d -m 0700 "$DESTDIR$STATEDIR" "$DESTDIR$STATEDIR/reports"
own "$SERVICE_USER:$SERVICE_USER" "$DESTDIR$STATEDIR"
own "$SERVICE_USER:$SERVICE_USER" "$DESTDIR$STATEDIR/reports"

CONFIG="$DESTDIR$CONFDIR/config.toml"
if [ -e "$CONFIG" ]; then
    say "kept existing $CONFDIR/config.toml"
else
    install -m 0640 "$SRCDIR/examples/config.toml" "$CONFIG"
    own "root:$SERVICE_USER" "$CONFIG"
    say "wrote $CONFDIR/config.toml (commented example: edit the [[source]] entries)"
fi

# --- systemd files --------------------------------------------------------------------
install -d -m 0755 "$DESTDIR$UNITDIR" "$DESTDIR$TMPFILESDIR"
# The unit names the default venv; point it at PREFIX when that differs.
sed "s|$DEFAULT_PREFIX/|$PREFIX/|g" "$SRCDIR/systemd/log-auditor.service" \
    >"$DESTDIR$UNITDIR/log-auditor.service.tmp"
chmod 0644 "$DESTDIR$UNITDIR/log-auditor.service.tmp"
mv -f "$DESTDIR$UNITDIR/log-auditor.service.tmp" "$DESTDIR$UNITDIR/log-auditor.service"
install -m 0644 "$SRCDIR/systemd/log-auditor.tmpfiles" "$DESTDIR$TMPFILESDIR/log-auditor.conf"

# --- bundled rulesets and docs --------------------------------------------------------
# `<venv>/share/log-auditor/rulesets` is on the rules loader's search path. Replace the
# whole set, so a ruleset removed upstream does not linger.
RULESDIR="$DESTDIR$PREFIX/share/log-auditor/rulesets"
install -d -m 0755 "$RULESDIR"
rm -f "$RULESDIR"/*.toml
for f in "$SRCDIR"/rulesets/*.toml; do
    if [ -e "$f" ]; then install -m 0644 "$f" "$RULESDIR/"; fi
done
DOCDIR="$DESTDIR$PREFIX/share/doc/log-auditor"
install -d -m 0755 "$DOCDIR"
for f in operator-guide.md rules-guide.md compliance-readers.md; do
    if [ -e "$SRCDIR/docs/$f" ]; then install -m 0644 "$SRCDIR/docs/$f" "$DOCDIR/"; fi
done
install -m 0644 "$SRCDIR/examples/config.toml" "$DOCDIR/config.toml.example"

# --- activate -------------------------------------------------------------------------
if [ "$LIVE" = 1 ]; then
    if command -v systemd-tmpfiles >/dev/null 2>&1; then
        systemd-tmpfiles --create "$TMPFILESDIR/log-auditor.conf" || true
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    else
        say "systemd is not running here: skipped systemctl daemon-reload"
    fi
    if ! "$BIN" check-config --config "$CONFDIR/config.toml"; then
        say "the config does not validate yet: fix it before starting the service"
    fi
fi

say "installed log-auditor into ${DESTDIR:-/} (venv $PREFIX)"
cat <<EOF

Next steps:
  1. Edit $CONFDIR/config.toml: one [[source]] per access log (see the operator guide,
     $PREFIX/share/doc/log-auditor/operator-guide.md, for each gateway's log format).
  2. Check it:        $BIN check-config
  3. Start it:        systemctl enable --now log-auditor
  4. Watch it:        systemctl status log-auditor; journalctl -u log-auditor -f
                      sudo -u $SERVICE_USER $BIN status --db $STATEDIR/audit.db
EOF
