# shellcheck shell=bash
# datalake-hub: point the Rucio client and rucio-jupyterlab at the credentials the hub mounts.
#
# docker-stacks' start.sh *sources* every before-notebook.d/*.sh (run-hooks.sh) and then execs the
# server, so the variables exported here are the ones the server and its terminals/kernels start with.
# Because this file is sourced into start.sh it must never `exit`, must not leave `set -e` traps, and
# keeps its variables local to one function that is removed afterwards.
#
# The hub mounts a Secret as a directory (default /etc/datalake/rucio) holding rucio.cfg,
# rucio-<instance>.cfg, token-<instance> and jupyter_server_config.json. The files are used in place,
# never copied: the hub rotates tokens in the mounted files while the server runs.
# Nothing here prints the contents of those files; only names and paths are logged.
#
# Overridable for tests and unusual layouts: DATALAKE_RUCIO_DIR (mount directory),
# DATALAKE_BT_TMPDIR (where the Rucio client looks for bt_u<uid>, default /tmp).

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

# The uid the notebook server will run as (start.sh switches from root to NB_UID after the hooks).
_datalake_target_uid() {
    if [[ "$(id -u)" == 0 && -n "${NB_UID:-}" && "${NB_USER:-root}" != "root" ]]; then
        printf '%s' "${NB_UID}"
    else
        id -u
    fi
}

_datalake_check_token_file() {
    # $1: config file that names the token, $2: token file path (already extracted, never its content).
    local cfg="$1" token="$2"
    if [[ "${token}" == *"~"* || "${token}" == *'$'* ]]; then
        _datalake_log warn "Rucio: ${cfg} names auth_token_file_path ${token}; the Rucio client does not expand ~ or \$VARS, so authentication will fail."
    elif [[ ! -e "${token}" ]]; then
        _datalake_log warn "Rucio: the token file ${token} named in ${cfg} does not exist; rucio commands will fail to authenticate."
    elif [[ ! -r "${token}" ]]; then
        _datalake_log warn "Rucio: the token file ${token} named in ${cfg} is not readable by uid $(id -u)."
    elif [[ ! -s "${token}" ]]; then
        _datalake_log warn "Rucio: the token file ${token} named in ${cfg} is empty; rucio commands will fail to authenticate."
    elif [[ "$(tail -c 1 "${token}" | od -An -c | tr -d ' ')" == '\n' ]]; then
        _datalake_log warn "Rucio: the token file ${token} ends with a newline; the Rucio client sends it unstripped and every request will fail."
    fi
}

# RUCIO_CONFIG must never name a missing file: every rucio command would print a ConfigLoadingError
# traceback. When the hub's files are absent, point it at a stand-in whose auth_type is the reason:
# the Rucio client refuses unknown auth types before contacting anything and prints the value, so
# `rucio whoami` says in one line why Rucio is unavailable.
_datalake_rucio_standin() {
    # $1: the hub's mount directory, $2: target uid.
    local dir="$1" uid="$2" standin
    case "${RUCIO_CONFIG:-}" in
        "" | "${dir}"/*) ;;
        *) return 0 ;; # the user's own RUCIO_CONFIG: verified below, never replaced
    esac
    [[ -n "${RUCIO_CONFIG:-}" && -r "${RUCIO_CONFIG}" ]] && return 0
    standin="$(mktemp --suffix=.cfg "${TMPDIR:-/tmp}/datalake-rucio-unavailable.XXXXXX" 2>/dev/null)" || return 0
    printf '%s\n' \
        "# Written by the datalake-hub start-up hook: the hub's Rucio files are missing in this session." \
        "[client]" \
        "rucio_host = https://rucio.unavailable.invalid" \
        "auth_host = https://rucio.unavailable.invalid" \
        "auth_type = unavailable - datalake-hub could not prepare Rucio credentials for this session (${dir} is empty). Restart your server from the hub to try again" \
        >"${standin}"
    chmod 644 "${standin}"
    if [[ "$(id -u)" == 0 && "${uid}" != 0 ]]; then
        chown "${uid}:${NB_GID:-100}" "${standin}" 2>/dev/null || true
    fi
    export RUCIO_CONFIG="${standin}"
    _datalake_log warn "Rucio: RUCIO_CONFIG=${standin}, a stand-in that makes rucio commands say Rucio is unavailable in this session."
}

_datalake_rucio_hook() {
    local dir="${DATALAKE_RUCIO_DIR:-/etc/datalake/rucio}"
    local bt_dir="${DATALAKE_BT_TMPDIR:-/tmp}"
    local uid cfg token name instances=""
    uid="$(_datalake_target_uid)"

    # 1. Things that silently take precedence over the token file (rucio-clients' lookup order).
    if [[ -n "${BEARER_TOKEN+set}" ]]; then
        _datalake_log warn "Rucio: BEARER_TOKEN is set in the environment; the Rucio client uses it instead of the token the hub rotates, so rucio will stop working when it expires. Unset it to use the hub's token."
    fi
    if [[ -n "${BEARER_TOKEN_FILE+set}" ]]; then
        _datalake_log warn "Rucio: BEARER_TOKEN_FILE is set in the environment; the Rucio client uses that file instead of the token the hub rotates. Unset it to use the hub's token."
    fi
    for token in "${XDG_RUNTIME_DIR:+${XDG_RUNTIME_DIR}/bt_u${uid}}" "${bt_dir}/bt_u${uid}"; do
        if [[ -n "${token}" && -e "${token}" ]]; then
            _datalake_log warn "Rucio: ${token} exists; the Rucio client reads it before the token the hub rotates. Remove it to use the hub's token."
        fi
    done

    # 2. A writable per-user cache for rucio-jupyterlab's state database (its default is shared /tmp).
    if [[ -z "${RUCIO_CACHE_DIR:-}" ]]; then
        local cache="${TMPDIR:-/tmp}/rucio-cache-${uid}"
        if [[ -e "${cache}" && "$(stat -c %u "${cache}" 2>/dev/null)" != "${uid}" ]]; then
            cache="$(mktemp -d "${TMPDIR:-/tmp}/rucio-cache-${uid}.XXXXXX" 2>/dev/null)" || cache=""
        elif [[ ! -d "${cache}" ]] && ! mkdir -m 700 "${cache}" 2>/dev/null; then
            cache=""
        fi
        if [[ -n "${cache}" && "$(id -u)" == 0 && "${uid}" != 0 ]]; then
            chown "${uid}:${NB_GID:-100}" "${cache}" 2>/dev/null || true
        fi
        if [[ -n "${cache}" ]]; then
            export RUCIO_CACHE_DIR="${cache}"
            _datalake_log info "Rucio: RUCIO_CACHE_DIR=${cache}"
        else
            _datalake_log warn "Rucio: could not create a cache directory under ${TMPDIR:-/tmp}; set RUCIO_CACHE_DIR to a writable directory."
        fi
    elif [[ ! -d "${RUCIO_CACHE_DIR}" || ! -w "${RUCIO_CACHE_DIR}" ]]; then
        _datalake_log warn "Rucio: RUCIO_CACHE_DIR=${RUCIO_CACHE_DIR} is not a writable directory; the Rucio panel may fail to start."
    fi

    # 3. The mounted directory.
    if [[ ! -d "${dir}" ]]; then
        _datalake_log warn "Rucio is unavailable in this session: ${dir} is not mounted (the hub could not prepare Rucio credentials). The server starts anyway; rucio commands and the Rucio panel will not work. Restart the server from the hub to try again."
        _datalake_rucio_standin "${dir}" "${uid}"
        return 0
    fi
    if [[ -r "${dir}/status.txt" ]]; then
        while IFS= read -r name; do
            [[ -z "${name}" || "${name}" == "#"* ]] || _datalake_log info "${name}"
        done <"${dir}/status.txt"
    fi

    # 4. rucio.cfg: RUCIO_CONFIG wins in the Rucio client; set it when the pod did not, verify it when it did.
    if [[ -z "${RUCIO_CONFIG:-}" ]]; then
        if [[ -r "${dir}/rucio.cfg" ]]; then
            export RUCIO_CONFIG="${dir}/rucio.cfg"
            _datalake_log info "Rucio: RUCIO_CONFIG=${RUCIO_CONFIG}"
        fi
    fi
    if [[ ! -e "${dir}/rucio.cfg" ]]; then
        _datalake_log warn "Rucio is unavailable in this session: ${dir}/rucio.cfg is missing. rucio commands will not find a configuration."
        _datalake_rucio_standin "${dir}" "${uid}"
    fi
    if [[ -n "${RUCIO_CONFIG:-}" && ! -r "${RUCIO_CONFIG}" ]]; then
        _datalake_log warn "Rucio: RUCIO_CONFIG=${RUCIO_CONFIG} does not exist or is not readable; rucio commands will fail."
    fi

    # 5. Every config's token file (path from the config; the token itself is never read into the log).
    for cfg in "${dir}/rucio.cfg" "${dir}"/rucio-*.cfg; do
        [[ -r "${cfg}" ]] || continue
        name="$(basename "${cfg}" .cfg)"
        [[ "${name}" == rucio-* ]] && instances="${instances:+${instances} }${name#rucio-}"
        token="$(sed -n 's/^[[:space:]]*auth_token_file_path[[:space:]]*[=:][[:space:]]*//p' "${cfg}" | head -n 1 | sed 's/[[:space:]]*$//')"
        if [[ -n "${token}" ]]; then
            _datalake_check_token_file "${cfg}" "${token}"
        fi
    done
    if [[ -n "${instances}" ]]; then
        _datalake_log info "Rucio: instances configured: ${instances}${DATALAKE_RUCIO_DEFAULT:+ (default: ${DATALAKE_RUCIO_DEFAULT}, in rucio.cfg)}; select one with RUCIO_CONFIG=${dir}/rucio-<instance>.cfg"
    fi
    if ! compgen -G "${dir}/token-*" >/dev/null; then
        _datalake_log warn "Rucio: no token-<instance> file in ${dir}; authentication will fail until the hub provides one."
    fi

    # 6. rucio-jupyterlab reads RucioConfig once at server start from any Jupyter config dir;
    #    JUPYTER_CONFIG_PATH entries take precedence over ~/.jupyter and /etc/jupyter.
    if [[ -r "${dir}/jupyter_server_config.json" ]]; then
        case ":${JUPYTER_CONFIG_PATH:-}:" in
            *":${dir}:"*) ;;
            *) export JUPYTER_CONFIG_PATH="${dir}${JUPYTER_CONFIG_PATH:+:${JUPYTER_CONFIG_PATH}}" ;;
        esac
        _datalake_log info "Rucio: the Rucio panel is configured from ${dir}/jupyter_server_config.json"
    else
        _datalake_log warn "Rucio: ${dir}/jupyter_server_config.json is missing; the Rucio panel in JupyterLab will not be configured."
    fi
    return 0
}

_datalake_rucio_hook || _datalake_log warn "Rucio: the start-up check failed unexpectedly; the server starts anyway."
unset -f _datalake_rucio_hook _datalake_rucio_standin _datalake_check_token_file _datalake_log _datalake_target_uid
true
