#!/bin/sh
# Install the coinpredict systemd units and timers (see docs/deployment.md).
#
#   deploy/install-systemd.sh [options]
#
# Real install (as root): creates the system user "coinpredict", /etc/coinpredict (0750) with the
# EnvironmentFile coinpredict.env (0600, only if absent), the state and export directories,
# renders the units into /etc/systemd/system, runs "systemctl daemon-reload" and enables + starts
# the timers.
#
# DESTDIR mode (DESTDIR=DIR or --destdir DIR) and --dry-run: render everything below DIR
# (DIR/etc/systemd/system, DIR/etc/coinpredict, ...) and print the system commands that a real
# install would run, without running them. The timers are enabled inside DIR with
# "systemctl --root=DIR enable" (offline; creates the timers.target.wants symlinks).
# --dry-run without a DESTDIR renders into a new temporary directory and prints its path.
#
# Options (each also settable through the environment variable in brackets):
#   --prefix DIR        install prefix holding the venv [PREFIX] (default: this checkout if it
#                       has .venv/bin/coinpredict, else /opt/coinpredict)
#   --bin PATH          coinpredict executable [COINPREDICT_BIN] (default PREFIX/.venv/bin/coinpredict)
#   --export-dir DIR    JSON export directory served by nginx [EXPORT_DIR] (default /var/www/coinpredict)
#   --timeframes LIST   cycle timers to enable, from 1m,1h,1d,1w,1M [TIMEFRAMES]
#                       (default: COINPREDICT_TIMEFRAMES from the env file, else 1h)
#   --web-group GROUP   group nginx reads the export directory as [WEB_GROUP] (default www-data)
#   --destdir DIR       render below DIR instead of / [DESTDIR]
#   --dry-run           do not touch the system (see above)
#   --no-enable         install the units but do not enable or start any timer
#   -h, --help          this text
set -eu

usage() { sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "install-systemd: error: $*" >&2; exit 2; }
say() { echo "install-systemd: $*"; }

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
SRC_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
UNIT_SRC="$SRC_DIR/systemd"

# Default prefix: this checkout when it holds the venv (make install-systemd from the
# deployed tree), else /opt/coinpredict.
if [ -z "${PREFIX:-}" ] && [ -x "$SRC_DIR/.venv/bin/coinpredict" ]; then
    PREFIX=$SRC_DIR
fi
PREFIX=${PREFIX:-/opt/coinpredict}
COINPREDICT_BIN=${COINPREDICT_BIN:-}
EXPORT_DIR=${EXPORT_DIR:-/var/www/coinpredict}
TIMEFRAMES=${TIMEFRAMES:-}
WEB_GROUP=${WEB_GROUP:-www-data}
DESTDIR=${DESTDIR:-}
DRY_RUN=0
ENABLE=1

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) PREFIX=${2:?--prefix needs a value}; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --bin) COINPREDICT_BIN=${2:?--bin needs a value}; shift 2 ;;
        --bin=*) COINPREDICT_BIN=${1#*=}; shift ;;
        --export-dir) EXPORT_DIR=${2:?--export-dir needs a value}; shift 2 ;;
        --export-dir=*) EXPORT_DIR=${1#*=}; shift ;;
        --timeframes) TIMEFRAMES=${2:?--timeframes needs a value}; shift 2 ;;
        --timeframes=*) TIMEFRAMES=${1#*=}; shift ;;
        --web-group) WEB_GROUP=${2:?--web-group needs a value}; shift 2 ;;
        --web-group=*) WEB_GROUP=${1#*=}; shift ;;
        --destdir) DESTDIR=${2:?--destdir needs a value}; shift 2 ;;
        --destdir=*) DESTDIR=${1#*=}; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        --no-enable) ENABLE=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

COINPREDICT_BIN=${COINPREDICT_BIN:-$PREFIX/.venv/bin/coinpredict}

OFFLINE=0
if [ -n "$DESTDIR" ] || [ "$DRY_RUN" = 1 ]; then
    OFFLINE=1
fi

# --- validate -------------------------------------------------------------------------------
check_path() { # name value: absolute, no whitespace or characters systemd/sed would mangle
    case $2 in
        /*) ;;
        *) die "$1 must be an absolute path, got '$2'" ;;
    esac
    case $2 in
        *[[:space:]]*|*[\'\"\\\$\`%@\;\|\&]*) die "$1 contains characters not allowed in a unit file: '$2'" ;;
    esac
}
check_path --prefix "$PREFIX"
check_path --bin "$COINPREDICT_BIN"
check_path --export-dir "$EXPORT_DIR"
case $EXPORT_DIR in
    /|/etc|/etc/*|/usr|/usr/*|/var/lib/coinpredict|/var/lib/coinpredict/*)
        die "--export-dir '$EXPORT_DIR' is not a sensible place to publish JSON" ;;
esac
case $COINPREDICT_BIN in
    /home/*|/root/*|/run/user/*|/tmp/*|/var/tmp/*)
        # ProtectHome=yes hides /home, /root and /run/user from the jobs; PrivateTmp=yes gives
        # them an empty /tmp. A binary there would exist for this script but not for the units.
        if [ "$OFFLINE" = 1 ]; then
            say "warning: $COINPREDICT_BIN is invisible to the sandboxed units (ProtectHome/PrivateTmp)"
        else
            die "$COINPREDICT_BIN is invisible to the sandboxed units (ProtectHome=yes, PrivateTmp=yes): install under /opt/coinpredict"
        fi ;;
esac
if [ ! -x "$COINPREDICT_BIN" ]; then
    if [ "$OFFLINE" = 1 ]; then
        say "warning: $COINPREDICT_BIN is not executable (yet); the units will fail until it is"
    else
        die "$COINPREDICT_BIN is not executable: create the venv first (see docs/deployment.md)"
    fi
fi
if [ "$OFFLINE" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "a real install needs root (or use --dry-run / DESTDIR=DIR to render only)"
fi

parse_timeframes() { # TIMEFRAMES -> TF_LIST (validated, de-duplicated)
    TF_LIST=
    for tf in $(echo "$TIMEFRAMES" | tr ',' ' '); do
        case $tf in
            1m|1h|1d|1w|1M) ;;
            *) die "--timeframes: '$tf' is not one of 1m,1h,1d,1w,1M (case matters: 1m minute, 1M month)" ;;
        esac
        case " $TF_LIST " in *" $tf "*) ;; *) TF_LIST="$TF_LIST $tf" ;; esac
    done
    TF_LIST=${TF_LIST# }
    [ -n "$TF_LIST" ] || die "--timeframes is empty"
}
[ -z "$TIMEFRAMES" ] || parse_timeframes

if [ "$OFFLINE" = 1 ]; then
    if [ -z "$DESTDIR" ]; then
        DESTDIR=$(mktemp -d "${TMPDIR:-/tmp}/coinpredict-install.XXXXXX")
    fi
    mkdir -p "$DESTDIR"
    DESTDIR=$(cd "$DESTDIR" && pwd)
fi

ETC_DIR="$DESTDIR/etc/coinpredict"
ENV_FILE="$ETC_DIR/coinpredict.env"
UNIT_DIR="$DESTDIR/etc/systemd/system"


# --- helpers --------------------------------------------------------------------------------
run() { # run a system-changing command, or print it in offline mode
    if [ "$OFFLINE" = 1 ]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

render() { # src dst: substitute the @PLACEHOLDERS@, refuse leftovers
    sed -e "s|@BIN@|$COINPREDICT_BIN|g" \
        -e "s|@PREFIX@|$PREFIX|g" \
        -e "s|@EXPORT_DIR@|$EXPORT_DIR|g" \
        "$1" > "$2.tmp"
    if grep -n '@[A-Z_]*@' "$2.tmp" >&2; then
        rm -f "$2.tmp"
        die "unrendered placeholder in $1"
    fi
    chmod 0644 "$2.tmp"
    mv -f "$2.tmp" "$2"
}

# --- user, directories, env file ------------------------------------------------------------
if [ "$OFFLINE" = 0 ]; then
    if ! getent group coinpredict >/dev/null; then
        groupadd --system coinpredict
    fi
    if ! getent passwd coinpredict >/dev/null; then
        useradd --system --gid coinpredict --home-dir /var/lib/coinpredict --no-create-home \
            --shell /usr/sbin/nologin --comment "coinpredict jobs" coinpredict
        say "created system user coinpredict"
    fi
    if ! getent group "$WEB_GROUP" >/dev/null; then
        say "warning: group $WEB_GROUP does not exist (nginx not installed?); export dir will be 0755"
        WEB_GROUP=
    fi
else
    echo "would run: create system user and group coinpredict (home /var/lib/coinpredict, nologin)"
fi

mkdir -p "$ETC_DIR"
if [ "$OFFLINE" = 0 ]; then
    chown root:coinpredict "$ETC_DIR"
fi
chmod 0750 "$ETC_DIR"

if [ -e "$ENV_FILE" ]; then
    say "keeping existing $ENV_FILE"
else
    (umask 077 && cp "$SCRIPT_DIR/coinpredict.env.example" "$ENV_FILE")
    chmod 0600 "$ENV_FILE"
    [ "$OFFLINE" = 1 ] || chown root:root "$ENV_FILE"
    say "created $ENV_FILE (0600): put the InfluxDB token/password and settings there"
fi
# Which cycle timers to enable: --timeframes, else the env file (just created from the example
# on a first install), else the default 1h.
if [ -z "$TIMEFRAMES" ] && [ -f "$ENV_FILE" ]; then
    # Last assignment wins, as in systemd; strip optional quotes.
    TIMEFRAMES=$(sed -n 's/^[[:space:]]*COINPREDICT_TIMEFRAMES[[:space:]]*=[[:space:]]*//p' "$ENV_FILE" \
        | tail -n 1 | tr -d "\"' ")
fi
TIMEFRAMES=${TIMEFRAMES:-1h}
parse_timeframes
# The TOML example is installed beside, never as, the live config.
cp "$SCRIPT_DIR/coinpredict.toml.example" "$ETC_DIR/coinpredict.toml.example"
chmod 0640 "$ETC_DIR/coinpredict.toml.example"
[ "$OFFLINE" = 1 ] || chown root:coinpredict "$ETC_DIR/coinpredict.toml.example"

# State: systemd's StateDirectory= creates /var/lib/coinpredict itself; pre-creating it here
# (same owner/mode) lets "coinpredict init" run by hand before the first timer fires, and adds
# the metrics/ directory for node_exporter's textfile collector.
if [ "$OFFLINE" = 0 ]; then
    install -d -o coinpredict -g coinpredict -m 0750 /var/lib/coinpredict
    install -d -o coinpredict -g coinpredict -m 0750 /var/lib/coinpredict/metrics
    # Export dir: owned by coinpredict, group = nginx's group, setgid so that every file and
    # subdirectory created in it belongs to that group (readable by nginx even under UMask=0027).
    if [ -n "$WEB_GROUP" ]; then
        install -d -o coinpredict -g "$WEB_GROUP" -m 2750 "$EXPORT_DIR"
    else
        install -d -o coinpredict -g coinpredict -m 0755 "$EXPORT_DIR"
    fi
else
    echo "would run: install -d -o coinpredict -g coinpredict -m 0750 /var/lib/coinpredict /var/lib/coinpredict/metrics"
    echo "would run: install -d -o coinpredict -g $WEB_GROUP -m 2750 $EXPORT_DIR"
fi

# --- units ----------------------------------------------------------------------------------
mkdir -p "$UNIT_DIR"
for src in "$UNIT_SRC"/*.service "$UNIT_SRC"/*.timer; do
    render "$src" "$UNIT_DIR/$(basename "$src")"
done
for dropin_dir in "$UNIT_SRC"/*.d; do
    [ -d "$dropin_dir" ] || continue
    dst="$UNIT_DIR/$(basename "$dropin_dir")"
    mkdir -p "$dst"
    for src in "$dropin_dir"/*.conf; do
        render "$src" "$dst/$(basename "$src")"
    done
done
say "rendered units into $UNIT_DIR (bin $COINPREDICT_BIN, export dir $EXPORT_DIR)"

CYCLES=
UNUSED=
for tf in 1m 1h 1d 1w 1M; do
    case " $TF_LIST " in
        *" $tf "*) CYCLES="$CYCLES coinpredict-cycle@$tf.timer" ;;
        *) UNUSED="$UNUSED coinpredict-cycle@$tf.timer" ;;
    esac
done
TIMERS="${CYCLES# } coinpredict-monitor.timer coinpredict-detect-gaps.timer coinpredict-train.timer"

if [ "$OFFLINE" = 1 ]; then
    echo "would run: systemctl daemon-reload"
    if [ "$ENABLE" = 1 ]; then
        echo "would run: systemctl enable --now $TIMERS"
        [ -z "$UNUSED" ] || echo "would run: systemctl disable --now$UNUSED"
        if command -v systemctl >/dev/null 2>&1; then
            # Offline enable: only creates the [Install] symlinks below DESTDIR.
            # shellcheck disable=SC2086
            systemctl --root="$DESTDIR" --quiet enable $TIMERS 2>/dev/null \
                || die "systemctl --root=$DESTDIR enable failed"
        fi
    fi
    say "offline render done in $DESTDIR; nothing on this system was changed"
    exit 0
fi

systemctl daemon-reload
if [ "$ENABLE" = 1 ]; then
    # shellcheck disable=SC2086
    systemctl enable --now $TIMERS
    # shellcheck disable=SC2086
    [ -z "$UNUSED" ] || systemctl disable --now $UNUSED 2>/dev/null || true
    say "enabled timers: $TIMERS"
    say "inspect with: systemctl list-timers 'coinpredict-*'"
else
    say "timers not enabled (--no-enable); enable with: systemctl enable --now $TIMERS"
fi
