#!/bin/sh
# Fills the ${NAME} placeholders of the given manifests from the environment and prints the
# result, for `kubectl create -f -` / `kubectl apply -f -`:
#
#   deploy/k8s/render.sh deploy/k8s/shards-job.yaml | kubectl create -f -
#
# It is envsubst (GNU gettext) with an explicit list of names, so nothing else in the files
# that looks like a variable is touched: not Kubernetes' $(NAME), not the merge script's
# $RUN_DIR. Before that it refuses a placeholder whose variable is unset or empty, and
# values that would make a broken manifest (a RUN that is not a short DNS label, a SHARDS
# that is not a positive whole number, a START_AT in neither accepted form, quotes or
# backslashes inside a quoted YAML value).
set -eu

NAMES='RUN SHARDS START_AT IMAGE BASE_URL MODEL STORAGE_CLASS'

die() { echo "render.sh: $*" >&2; exit 2; }

[ "$#" -ge 1 ] || die "usage: render.sh MANIFEST.yaml..."
command -v envsubst >/dev/null 2>&1 || die "envsubst not found (Debian/Ubuntu: apt-get install gettext-base; macOS: brew install gettext)"

list=""
for f in "$@"; do
  [ -f "$f" ] || die "$f: no such file"
  for n in $NAMES; do
    grep -q "\${$n}" "$f" || continue
    eval "v=\${$n-}"
    [ -n "$v" ] || die "$f uses \${$n}: set $n (see deploy/k8s/README.md)"
    case "$v" in
      *'"'* | *'\'*) die "$n='$v': no quotes or backslashes, please" ;;
    esac
    case "$n" in
      RUN)
        printf '%s\n' "$v" | grep -Eq '^[a-z0-9]([-a-z0-9]{0,28}[a-z0-9])?$' \
          || die "RUN='$v': lower-case letters, digits and '-', at most 30 characters, starting and ending with a letter or digit (it names the Jobs and the folder)" ;;
      SHARDS)
        printf '%s\n' "$v" | grep -Eq '^[1-9][0-9]*$' || die "SHARDS='$v': a whole number >= 1" ;;
      START_AT)
        printf '%s\n' "$v" | grep -Eq '^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})|[0-9]+(\.[0-9]+)?)$' \
          || die "START_AT='$v': RFC 3339 (2026-12-01T17:30:00Z) or Unix seconds; e.g. START_AT=\$(date -u -d '+2 min' +%Y-%m-%dT%H:%M:%SZ)" ;;
    esac
    case " $list " in *" \${$n} "*) ;; *) list="$list \${$n}" ;; esac
  done
done

first=1
for f in "$@"; do
  [ "$first" = 1 ] || printf -- '---\n'
  first=0
  envsubst "$list" <"$f"
done
