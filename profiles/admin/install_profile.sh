#!/usr/bin/env bash
# Make `snakemake --profile slurm` (run from the repository root, or anywhere) use
# this repository's profiles/slurm.
#
# Why this is needed: snakemake 9 resolves `--profile NAME` (snakemake/cli.py,
# get_profile_dir) as ./NAME if that path exists, else NAME inside, in this order:
#   1. the current working directory           ./slurm
#   2. the user config dir (platformdirs)       ${XDG_CONFIG_HOME:-~/.config}/snakemake/slurm
#   3. the site config dir (platformdirs)       ${XDG_CONFIG_DIRS%%:*:-/etc/xdg}/snakemake/slurm
# It never looks into ./profiles/ for --profile (only --workflow-profile uses
# profiles/default). So profiles/slurm is not found by name.
#
# What this does: creates the symlink  <user config dir>/snakemake/<name> ->
# <repo>/profiles/<profile>  (default name = profile = slurm). Edits to
# profiles/slurm/config.yaml in the checkout take effect immediately.
# It never replaces anything: if <name> already exists there and is not this link,
# or a site-wide profile <name> exists (which the link would shadow for all your
# workflows), it fails and tells you what to do (e.g. --name stsflow-slurm).
#
# Usage: profiles/admin/install_profile.sh [--name NAME] [--uninstall] [--check] [PROFILE]
#   PROFILE      profile directory under profiles/ (default: slurm; also: local)
#   --name NAME  install under another name, e.g. --name stsflow-slurm, then use
#                snakemake --profile stsflow-slurm
#   --check      only report whether `--profile NAME` resolves to this checkout
#   --uninstall  remove the link, only if it points to this checkout's profile
# Environment: SNAKEMAKE_PYTHON  python that runs snakemake (default: the interpreter
#              of `snakemake` on PATH), used to ask snakemake for its config dirs.
set -euo pipefail

die() { echo "install_profile.sh: ERROR: $*" >&2; exit 1; }
say() { echo "install_profile.sh: $*" >&2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"  # profiles/admin/ -> repository root
PROFILE=slurm
NAME=""
MODE=install
while (($#)); do
    case "$1" in
    --name) NAME="${2:?--name needs a value}"; shift 2 ;;
    --name=*) NAME="${1#--name=}"; shift ;;
    --uninstall) MODE=uninstall; shift ;;
    --check) MODE=check; shift ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) PROFILE="$1"; shift ;;
    esac
done
NAME="${NAME:-$PROFILE}"
[[ "$NAME" =~ ^[A-Za-z0-9._-]+$ && "$NAME" != . && "$NAME" != .. ]] || die "invalid profile name '$NAME'"
SRC="$REPO/profiles/$PROFILE"
[[ -f "$SRC/config.yaml" ]] || die "no profile at $SRC (missing config.yaml)"

# --- where does snakemake look? Ask snakemake itself, fall back to the same rules. ---
snakemake_python() {
    if [[ -n "${SNAKEMAKE_PYTHON:-}" ]]; then echo "$SNAKEMAKE_PYTHON"; return; fi
    local sm line
    sm="$(command -v snakemake 2>/dev/null)" || return 0
    IFS= read -r line <"$sm" || return 0
    if [[ "$line" == '#!'* ]]; then
        line="${line#\#!}"
        line="${line%% *}"
        [[ -x "$line" ]] && echo "$line"
    fi
}

USER_DIR="" SITE_DIR=""
PY="$(snakemake_python || true)"
if [[ -n "$PY" ]]; then
    if dirs="$("$PY" -c 'from snakemake.common import get_appdirs
d = get_appdirs(); print(d.user_config_dir); print(d.site_config_dir)' 2>/dev/null)"; then
        USER_DIR="$(sed -n 1p <<<"$dirs")"
        SITE_DIR="$(sed -n 2p <<<"$dirs")"
    fi
fi
if [[ -z "$USER_DIR" ]]; then # platformdirs' Linux rules
    cfg="${XDG_CONFIG_HOME:-}"
    [[ -n "${cfg// /}" ]] || cfg="$HOME/.config"
    USER_DIR="$cfg/snakemake"
    sitecfg="${XDG_CONFIG_DIRS:-}"
    sitecfg="${sitecfg%%:*}"
    [[ -n "${sitecfg// /}" ]] || sitecfg=/etc/xdg
    SITE_DIR="$sitecfg/snakemake"
    say "snakemake not importable (set SNAKEMAKE_PYTHON); assuming user dir $USER_DIR"
fi
LINK="$USER_DIR/$NAME"

points_here() { # path -> true if it is a symlink resolving to $SRC
    [[ -L "$1" ]] || return 1
    local t
    t="$(readlink -f "$1" 2>/dev/null)" || return 1
    [[ "$t" == "$(readlink -f "$SRC")" ]]
}

warn_shadowing() {
    # ./NAME in the repository root (the cwd for users) would win over the link.
    if [[ -e "$REPO/$NAME" || -L "$REPO/$NAME" ]]; then
        say "WARNING: $REPO/$NAME exists; run from the repository root, snakemake uses it instead of $LINK"
    fi
}

case "$MODE" in
check)
    if points_here "$LINK"; then
        echo "OK: snakemake --profile $NAME -> $LINK -> $SRC"
        warn_shadowing
        exit 0
    fi
    echo "NOT INSTALLED: $LINK does not point to $SRC" >&2
    exit 1
    ;;
uninstall)
    if points_here "$LINK"; then
        rm -f "$LINK"
        say "removed $LINK"
    elif [[ -e "$LINK" || -L "$LINK" ]]; then
        die "$LINK is not a link to $SRC; left untouched"
    else
        say "nothing to remove ($LINK does not exist)"
    fi
    exit 0
    ;;
esac

# --- install ---
if points_here "$LINK"; then
    say "already installed: $LINK -> $(readlink "$LINK")"
    warn_shadowing
    exit 0
fi
if [[ -e "$LINK" || -L "$LINK" ]]; then
    what="a directory/file"
    if [[ -L "$LINK" ]]; then what="a link to $(readlink "$LINK")"; fi
    die "$LINK already exists ($what) and is not this checkout's profile.
  It was NOT changed. Either
    - use a different name:  $0 --name stsflow-$NAME $PROFILE   (then: snakemake --profile stsflow-$NAME)
    - or pass the path:      snakemake --profile $SRC
    - or remove/rename $LINK yourself and re-run this script."
fi
if [[ -n "$SITE_DIR" && -e "$SITE_DIR/$NAME" ]] && ! points_here "$SITE_DIR/$NAME"; then
    die "a site-wide profile $SITE_DIR/$NAME exists (probably provided by your cluster admins).
  A user-level '$NAME' would shadow it for ALL your Snakemake workflows, so nothing was changed.
    - use a different name:  $0 --name stsflow-$NAME $PROFILE   (then: snakemake --profile stsflow-$NAME)
    - or pass the path:      snakemake --profile $SRC"
fi
mkdir -p "$USER_DIR"
ln -s "$SRC" "$LINK"
say "installed: $LINK -> $SRC"
say "use: snakemake --profile $NAME"
warn_shadowing
