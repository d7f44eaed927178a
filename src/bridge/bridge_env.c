/* The environment an imported stdio MCP server starts with: not the node's
 * (which would show every secret of the node to whoever can call the
 * server's tools), but PATH, HOME and LANG, the variables named to pass
 * from the node's environment, and the NAME=value pairs given.
 * docs/MCP.md "Environment". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/bridge_int.h"

/* Passed from the node's environment to every server. */
static const char *const s_base[] = { "PATH", "HOME", "LANG" };

static bool s_env_name_ok(const char *n, size_t len)
{
    if (len == 0 || len > MZ_BRIDGE_ENV_NAME_MAX || (n[0] >= '0' && n[0] <= '9'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* Sets NAME=value in env (n entries used), replacing an earlier NAME. Takes kv. */
static void s_put(char **env, size_t *n, char *kv)
{
    size_t len = strcspn(kv, "=");

    for (size_t i = 0; i < *n; i++)
        if (strncmp(env[i], kv, len + 1) == 0) {
            free(env[i]);
            env[i] = kv;
            return;
        }
    env[(*n)++] = kv;
}

static char *s_from_node(const char *name)
{
    const char *v = getenv(name);
    char *kv;

    if (v == NULL)
        return NULL;
    kv = malloc(strlen(name) + strlen(v) + 2);
    if (kv != NULL)
        sprintf(kv, "%s=%s", name, v);
    return kv;
}

mz_status mz__bridge_env_check(const char *server, const mz_bridge_spec *spec, mz_err *err)
{
    if (spec->n_env > MZ_BRIDGE_MAX_ENV || spec->n_env_pass > MZ_BRIDGE_MAX_ENV)
        return mz_err_set(err, MZ_EINVAL, "bridge %s: at most %d --env and %d --env-pass "
                          "(MZ_BRIDGE_MAX_ENV)", server, MZ_BRIDGE_MAX_ENV, MZ_BRIDGE_MAX_ENV);
    for (size_t i = 0; i < spec->n_env; i++) {
        const char *kv = spec->env[i], *eq = kv ? strchr(kv, '=') : NULL;
        if (eq == NULL || !s_env_name_ok(kv, (size_t)(eq - kv)))
            return mz_err_set(err, MZ_EINVAL, "bridge %s: environment entry '%.80s' must be "
                              "NAME=value, NAME 1-%d characters of A-Z a-z 0-9 _ not starting "
                              "with a digit", server, kv ? kv : "", MZ_BRIDGE_ENV_NAME_MAX);
        if (strlen(kv) > MZ_BRIDGE_ENV_VALUE_MAX)
            return mz_err_set(err, MZ_EINVAL, "bridge %s: environment entry %.*s is over %d "
                              "bytes", server, (int)(eq - kv), kv, MZ_BRIDGE_ENV_VALUE_MAX);
    }
    for (size_t i = 0; i < spec->n_env_pass; i++) {
        const char *n = spec->env_pass[i];
        if (n == NULL || !s_env_name_ok(n, strlen(n)))
            return mz_err_set(err, MZ_EINVAL, "bridge %s: variable name '%.80s' to pass must "
                              "be 1-%d characters of A-Z a-z 0-9 _ not starting with a digit",
                              server, n ? n : "", MZ_BRIDGE_ENV_NAME_MAX);
    }
    return MZ_OK;
}

char **mz__bridge_env_build(const mz_bridge_spec *spec)
{
    size_t cap = sizeof s_base / sizeof s_base[0] + spec->n_env_pass + spec->n_env + 1, n = 0;
    char **env = calloc(cap, sizeof *env), *kv;

    if (env == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof s_base / sizeof s_base[0]; i++)
        if ((kv = s_from_node(s_base[i])) != NULL)
            s_put(env, &n, kv);
    for (size_t i = 0; i < spec->n_env_pass; i++)
        if ((kv = s_from_node(spec->env_pass[i])) != NULL)
            s_put(env, &n, kv);
    for (size_t i = 0; i < spec->n_env; i++)
        if ((kv = strdup(spec->env[i])) != NULL)
            s_put(env, &n, kv);
    return env;
}

void mz__bridge_env_free(char **env)
{
    for (char **e = env; e && *e; e++)
        free(*e);
    free(env);
}
