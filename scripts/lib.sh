# Shared by the bench scripts (sourced, not run). The sourcing script defines `die` first.

# settings_from_args SCRIPT SETTINGS [ARG...]: `-h`/`--help` prints SCRIPT's header comment
# (its lines 2 up to `set -euo`) and exits; each KEY=VALUE whose KEY is in SETTINGS (a
# space-padded list of names) is assigned, overriding the environment; anything else is fatal.
settings_from_args() {
    local script=$1 settings=$2 arg key
    shift 2
    for arg in "$@"; do
        case "$arg" in
            -h | --help)
                sed -n '2,/^set -euo/p' "$script" | sed -e '$d' -e 's/^# \{0,1\}//'
                exit 0
                ;;
            *=*)
                key=${arg%%=*}
                [[ $settings == *" $key "* ]] || die "unknown setting '$key' (see --help)"
                printf -v "$key" '%s' "${arg#*=}"
                ;;
            *) die "unexpected argument '$arg' (use KEY=VALUE, see --help)" ;;
        esac
    done
}
