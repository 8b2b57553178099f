#!/bin/sh
# Install the nginx site that serves the coinpredict JSON export (see docs/deployment.md).
#
#   deploy/install-nginx.sh [options]
#
# Real install (as root): renders deploy/nginx-coinpredict.conf into
# /etc/nginx/sites-available/coinpredict, links it from sites-enabled/, checks the whole
# configuration with "nginx -t" (and restores the previous site file if that fails) and reloads
# nginx.
#
# DESTDIR mode (DESTDIR=DIR or --destdir DIR) and --dry-run: only render below DIR
# (DIR/etc/nginx/sites-available/coinpredict) and print what a real install would run.
# --dry-run without a DESTDIR renders into a new temporary directory and prints its path.
#
# Options (environment variable in brackets):
#   --listen SPEC        nginx "listen" parameters [NGINX_LISTEN] (default 80)
#   --server-name NAMES  server_name [NGINX_SERVER_NAME] (default _)
#   --export-dir DIR     directory to serve [EXPORT_DIR] (default /var/www/coinpredict)
#   --web-dir DIR        the dashboard page served at / [WEB_DIR] (default: this checkout's
#                        coinpredict/publish/web, i.e. /opt/coinpredict/coinpredict/publish/web)
#   --cors-origin ORIGIN allowed browser origin, e.g. https://app.example.org; repeatable, or a
#                        space/comma separated list; "*" allows any [CORS_ORIGINS] (default: none)
#   --destdir DIR        render below DIR instead of / [DESTDIR]
#   --output FILE        write the rendered site to FILE (no enabling, no reload)
#   --dry-run            do not touch the system
#   -h, --help           this text
set -eu

usage() { sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "install-nginx: error: $*" >&2; exit 2; }
say() { echo "install-nginx: $*"; }

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
TEMPLATE="$SCRIPT_DIR/nginx-coinpredict.conf"
DEFAULT_WEB_DIR=$(cd "$SCRIPT_DIR/.." && pwd)/coinpredict/publish/web

LISTEN=${NGINX_LISTEN:-80}
SERVER_NAME=${NGINX_SERVER_NAME:-_}
EXPORT_DIR=${EXPORT_DIR:-/var/www/coinpredict}
WEB_DIR=${WEB_DIR:-$DEFAULT_WEB_DIR}
CORS_ORIGINS=${CORS_ORIGINS:-}
DESTDIR=${DESTDIR:-}
OUTPUT=
DRY_RUN=0

while [ $# -gt 0 ]; do
    case $1 in
        --listen) LISTEN=${2:?--listen needs a value}; shift 2 ;;
        --listen=*) LISTEN=${1#*=}; shift ;;
        --server-name) SERVER_NAME=${2:?--server-name needs a value}; shift 2 ;;
        --server-name=*) SERVER_NAME=${1#*=}; shift ;;
        --export-dir) EXPORT_DIR=${2:?--export-dir needs a value}; shift 2 ;;
        --export-dir=*) EXPORT_DIR=${1#*=}; shift ;;
        --web-dir) WEB_DIR=${2:?--web-dir needs a value}; shift 2 ;;
        --web-dir=*) WEB_DIR=${1#*=}; shift ;;
        --cors-origin) CORS_ORIGINS="$CORS_ORIGINS ${2:?--cors-origin needs a value}"; shift 2 ;;
        --cors-origin=*) CORS_ORIGINS="$CORS_ORIGINS ${1#*=}"; shift ;;
        --destdir) DESTDIR=${2:?--destdir needs a value}; shift 2 ;;
        --destdir=*) DESTDIR=${1#*=}; shift ;;
        --output) OUTPUT=${2:?--output needs a value}; shift 2 ;;
        --output=*) OUTPUT=${1#*=}; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

# --- validate (values end up verbatim in nginx syntax) ---------------------------------------
case $EXPORT_DIR in
    /*) ;;
    *) die "--export-dir must be an absolute path, got '$EXPORT_DIR'" ;;
esac
case $EXPORT_DIR in
    *[!A-Za-z0-9/._+-]*) die "--export-dir may only contain A-Z a-z 0-9 / . _ + -: '$EXPORT_DIR'" ;;
esac
case $WEB_DIR in
    /*) ;;
    *) die "--web-dir must be an absolute path, got '$WEB_DIR'" ;;
esac
case $WEB_DIR in
    *[!A-Za-z0-9/._+-]*) die "--web-dir may only contain A-Z a-z 0-9 / . _ + -: '$WEB_DIR'" ;;
esac
[ -f "$WEB_DIR/index.html" ] || die "--web-dir: no index.html in '$WEB_DIR' (the page is coinpredict/publish/web)"
case $LISTEN in
    ''|*[!A-Za-z0-9.:\[\]\ _=-]*) die "--listen: unsupported characters in '$LISTEN'" ;;
esac
case $SERVER_NAME in
    ''|*[!A-Za-z0-9.*_\ ~^\$-]*) die "--server-name: unsupported characters in '$SERVER_NAME'" ;;
esac

CORS_MAP='    default "";'
set -f  # no globbing: "*" is an origin value here
for origin in $(echo "$CORS_ORIGINS" | tr ',' ' '); do
    if [ "$origin" = "*" ]; then
        CORS_MAP='    default "*";'
        break
    fi
    # scheme://host[:port], nothing else (no path, no trailing slash): what browsers send.
    if ! echo "$origin" | grep -Eq '^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$'; then
        die "--cors-origin: '$origin' is not an origin like https://app.example.org[:port]"
    fi
    CORS_MAP="$CORS_MAP
    \"$origin\" \$http_origin;"
done
set +f

OFFLINE=0
if [ -n "$DESTDIR" ] || [ "$DRY_RUN" = 1 ] || [ -n "$OUTPUT" ]; then
    OFFLINE=1
fi
if [ "$OFFLINE" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "a real install needs root (or use --dry-run / DESTDIR=DIR / --output FILE)"
fi
if [ -z "$OUTPUT" ] && [ "$OFFLINE" = 1 ]; then
    if [ -z "$DESTDIR" ]; then
        DESTDIR=$(mktemp -d "${TMPDIR:-/tmp}/coinpredict-nginx.XXXXXX")
    fi
    mkdir -p "$DESTDIR"
    DESTDIR=$(cd "$DESTDIR" && pwd)
fi

AVAILABLE="$DESTDIR/etc/nginx/sites-available/coinpredict"
ENABLED="$DESTDIR/etc/nginx/sites-enabled/coinpredict"
TARGET=${OUTPUT:-$AVAILABLE}

# --- render ---------------------------------------------------------------------------------
mkdir -p "$(dirname "$TARGET")"
TMP="$TARGET.tmp.$$"
trap 'rm -f "$TMP" "$TMP.map"' EXIT
printf '%s\n' "$CORS_MAP" > "$TMP.map"
sed -e "s|@LISTEN@|$LISTEN|g" \
    -e "s|@SERVER_NAME@|$SERVER_NAME|g" \
    -e "s|@EXPORT_DIR@|$EXPORT_DIR|g" \
    -e "s|@WEB_DIR@|$WEB_DIR|g" \
    -e "/^@CORS_MAP@\$/{
r $TMP.map
d
}" "$TEMPLATE" > "$TMP"
if grep -n '@[A-Z_]*@' "$TMP" >&2; then
    die "unrendered placeholder in $TEMPLATE"
fi
chmod 0644 "$TMP"

if [ "$OFFLINE" = 1 ]; then
    mv -f "$TMP" "$TARGET"
    say "rendered $TARGET (listen $LISTEN, root $EXPORT_DIR, page $WEB_DIR)"
    if [ -z "$OUTPUT" ]; then
        mkdir -p "$(dirname "$ENABLED")"
        ln -sfn /etc/nginx/sites-available/coinpredict "$ENABLED"
        echo "would run: nginx -t && systemctl reload nginx"
    fi
    exit 0
fi

BACKUP=
if [ -f "$AVAILABLE" ]; then
    BACKUP="$AVAILABLE.bak.$$"
    cp -p "$AVAILABLE" "$BACKUP"
fi
mv -f "$TMP" "$AVAILABLE"
ln -sfn "$AVAILABLE" "$ENABLED"
if ! nginx -t; then
    if [ -n "$BACKUP" ]; then
        mv -f "$BACKUP" "$AVAILABLE"
        say "nginx -t failed: restored the previous $AVAILABLE"
    else
        rm -f "$ENABLED" "$AVAILABLE"
        say "nginx -t failed: removed the new site"
    fi
    exit 1
fi
[ -z "$BACKUP" ] || rm -f "$BACKUP"
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx; then
    systemctl reload nginx
else
    nginx -s reload 2>/dev/null || say "nginx is not running; start it to serve the site"
fi
say "site enabled: $ENABLED -> $AVAILABLE (root $EXPORT_DIR, page $WEB_DIR)"
