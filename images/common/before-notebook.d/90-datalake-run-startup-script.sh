# shellcheck shell=bash
# datalake-hub: run the user's personal start-up script (by default ~/.jupyterlabrc) before the server starts.
#
# The path comes from DATALAKE_STARTUP_SCRIPT only, which the hub sets from the setting
# `datalake.spawner.startup_script` (unset or empty: no script runs), so the setting is the one place that
# decides it.
#
# Why a child shell and not a plain `source`: this file is itself sourced into docker-stacks' start.sh,
# so a plain `source ~/.jupyterlabrc` would let a user's `exit`, `set -e`, `exec` or endless loop end or
# hang the server start. Instead the script runs in a child bash (with a time limit, as the user when
# start.sh runs as root), which then dumps its environment; only if the script succeeded are the
# variables it exported or changed copied into start.sh's environment, so they reach the server, its
# terminals and kernels. A failing script is logged and changes nothing. Shell functions, aliases and
# unexported variables stay in the child (put those in ~/.bashrc for terminals).
# Only variable *names* are logged, never values.
#
# DATALAKE_STARTUP_SCRIPT_TIMEOUT: seconds the script may run (default 60).

if ! declare -F _datalake_log >/dev/null; then
    _datalake_log() {
        local level="$1"
        shift
        if declare -F "_log_${level}" >/dev/null; then
            "_log_${level}" "datalake: $*"
        else
            local upper
            upper="$(printf '%s' "${level}" | tr '[:lower:]' '[:upper:]')"
            [[ "${upper}" == "WARN" ]] && upper="WARNING"
            printf '%s datalake: %s\n' "${upper}" "$*" >&2
        fi
    }
fi

_datalake_startup_script_hook() {
    local rc="${DATALAKE_STARTUP_SCRIPT:-}"
    local limit="${DATALAKE_STARTUP_SCRIPT_TIMEOUT:-60}"
    [[ -n "${rc}" ]] || return 0
    local -a runner=()
    local as_user=""
    if [[ "$(id -u)" == 0 && -n "${NB_USER:-}" && "${NB_USER}" != "root" ]]; then
        # start.sh runs hooks as root before switching to NB_USER: never run the user's file as root.
        as_user="${NB_USER}"
        runner=(sudo --preserve-env --set-home --user "${NB_USER}" PATH="${PATH}")
    fi
    [[ -e "${rc}" ]] || return 0
    if [[ ! -f "${rc}" || ! -r "${rc}" ]]; then
        _datalake_log warn "${rc} exists but is not a readable file; skipped."
        return 0
    fi

    local out status=0
    out="$(mktemp "${TMPDIR:-/tmp}/datalake-startup-script.XXXXXX")" || {
        _datalake_log error "could not create a temporary file; ${rc} skipped."
        return 0
    }
    [[ -n "${as_user}" ]] && chown "${as_user}" "${out}"
    _datalake_log info "sourcing ${rc} (personal start-up script; time limit ${limit}s)"
    # Not `source ... || exit`: that would switch off a `set -e` inside the user's script.
    # shellcheck disable=SC2016  # $1/$2 are expanded by the child shell, on purpose
    timeout "${limit}" "${runner[@]}" bash --noprofile --norc -c \
        'source "$1" </dev/null; rc=$?; [[ ${rc} -eq 0 ]] || exit "${rc}"; env -0 >"$2"' \
        datalake-startup-script "${rc}" "${out}" || status=$?
    if [[ "${status}" -ne 0 || ! -s "${out}" ]]; then
        if [[ "${status}" -eq 0 ]]; then
            _datalake_log error "${rc} called exit before finishing; its settings were ignored. The server starts without them."
        elif [[ "${status}" -eq 124 ]]; then
            _datalake_log error "${rc} did not finish within ${limit}s; it was stopped and its settings ignored. The server starts without them."
        else
            _datalake_log error "${rc} failed (exit status ${status}); its settings were ignored. The server starts without them. Run 'bash -x ${rc}' in a terminal to see why."
        fi
        rm -f "${out}"
        return 0
    fi

    # Variables the child shell or sudo set for themselves, not the user's script.
    local skip=" _ SHLVL PWD OLDPWD HOME USER LOGNAME MAIL SHELL TERM SUDO_COMMAND SUDO_USER SUDO_UID SUDO_GID SUDO_HOME BASH_EXECUTION_STRING "
    local entry name value changed="" removed=""
    local -A seen=()
    while IFS= read -r -d '' entry; do
        name="${entry%%=*}"
        value="${entry#*=}"
        [[ "${name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
        [[ "${skip}" == *" ${name} "* ]] && continue
        seen["${name}"]=1
        if [[ -z "${!name+set}" || "${!name}" != "${value}" ]]; then
            changed="${changed:+${changed} }${name}"
        fi
        export "${name}=${value}"
    done <"${out}"
    rm -f "${out}"
    if [[ -z "${as_user}" ]]; then
        # sudo drops some variables by policy, so removals are only trusted without it.
        for name in $(compgen -e); do
            [[ "${skip}" == *" ${name} "* || -n "${seen[${name}]:-}" ]] && continue
            unset "${name}"
            removed="${removed:+${removed} }${name}"
        done
    fi
    _datalake_log info "${rc} done; variables set: ${changed:-none}; unset: ${removed:-none}"
    case " ${changed} " in
        *" BEARER_TOKEN "* | *" BEARER_TOKEN_FILE "*)
            _datalake_log warn "Rucio: ${rc} sets BEARER_TOKEN/BEARER_TOKEN_FILE; the Rucio client will use it instead of the token the hub rotates."
            ;;
    esac
    return 0
}

_datalake_startup_script_hook || _datalake_log error "running the personal start-up script failed unexpectedly; the server starts anyway."
unset -f _datalake_startup_script_hook _datalake_log
true
