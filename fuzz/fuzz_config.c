/* The config file of `meshzero node --config` (src/cli/config.c): the input
 * is the file's bytes, parsed against the node's real key table. Checks
 * beyond "no crash, no leak, no UB": a refusal has a message naming the
 * file; an accepted file gives only "--name" (flags) or "--name=value"
 * arguments of known keys, integers within the key's range, lists within
 * their length, no argument without its JSON path; and the arguments, put
 * back into a JSON object, parse again to exactly the same arguments. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"

#define FILE_NAME "fuzz.json"

static void s_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_config: %s: %s\n", what, detail ? detail : "");
    abort();
}

static const mz_cfg_key *s_key(const char *arg, const char **value)
{
    const char *eq = strchr(arg, '=');
    size_t n = eq ? (size_t)(eq - arg - 2) : strlen(arg) - 2;

    if (strncmp(arg, "--", 2) != 0)
        s_fail("argument without --", arg);
    *value = eq ? eq + 1 : NULL;
    for (size_t i = 0; i < mz_cfg_node_n_keys; i++)
        if (strlen(mz_cfg_node_keys[i].name) == n &&
            strncmp(mz_cfg_node_keys[i].name, arg + 2, n) == 0)
            return &mz_cfg_node_keys[i];
    s_fail("argument of an unknown key", arg);
    return NULL;
}

/* Checks each argument; returns them as a JSON object of the same shape. */
static json_t *s_check(const mz_cfg *c)
{
    json_t *obj = json_object();
    size_t counts[64] = { 0 };

    if (obj == NULL)
        return NULL;
    for (size_t i = 0; i < mz_cfg_argc(c); i++) {
        const char *arg = mz_cfg_arg(c, i), *value, *origin = mz_cfg_origin(c, i);
        const mz_cfg_key *k = s_key(arg, &value);
        size_t ki = (size_t)(k - mz_cfg_node_keys);
        if (origin == NULL || strncmp(origin, k->name, strlen(k->name)) != 0)
            s_fail("argument whose origin is not its key", arg);
        if ((k->kind == MZ_CFG_FLAG) != (value == NULL))
            s_fail("flag with a value, or option without one", arg);
        switch (k->kind) {
        case MZ_CFG_FLAG:
            json_object_set_new(obj, k->name, json_true());
            break;
        case MZ_CFG_STRING:
            json_object_set_new(obj, k->name, json_string(value));
            break;
        case MZ_CFG_UINT: {
            char *end;
            unsigned long long n = strtoull(value, &end, 10);
            if (*value == '\0' || *end != '\0' || value[0] == '-' || n > k->max)
                s_fail("integer out of its range", arg);
            json_object_set_new(obj, k->name, json_integer((json_int_t)n));
            break;
        }
        case MZ_CFG_LIST: {
            json_t *arr = json_object_get(obj, k->name);
            if (++counts[ki] > k->max)
                s_fail("list longer than its limit", arg);
            if (strchr(origin, '[') == NULL) {
                /* A lone string, not an array. */
                json_object_set_new(obj, k->name, json_string(value));
                break;
            }
            if (arr == NULL) {
                arr = json_array();
                json_object_set_new(obj, k->name, arr);
            }
            json_array_append_new(arr, json_string(value));
            break;
        }
        }
    }
    return obj;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mz_cfg *c = NULL, *again = NULL;
    mz_err err = { 0 };
    json_t *obj;
    char *text;

    if (mz_cfg_parse((const char *)data, size, FILE_NAME, mz_cfg_node_keys,
                     mz_cfg_node_n_keys, &c, &err) != MZ_OK) {
        if (c != NULL || strstr(err.msg, FILE_NAME) == NULL)
            s_fail("refusal without the file name, or with a result", err.msg);
        return 0;
    }
    obj = s_check(c);
    text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    if (text != NULL) {
        if (mz_cfg_parse(text, strlen(text), FILE_NAME, mz_cfg_node_keys, mz_cfg_node_n_keys,
                         &again, &err) != MZ_OK)
            s_fail("the accepted options, written back, are refused", err.msg);
        /* The same arguments in the same order: a key appears once (duplicates
         * are refused) and a list keeps its order. */
        if (mz_cfg_argc(again) != mz_cfg_argc(c))
            s_fail("written back, a different number of arguments", text);
        for (size_t i = 0; i < mz_cfg_argc(c); i++)
            if (strcmp(mz_cfg_arg(c, i), mz_cfg_arg(again, i)) != 0 ||
                strcmp(mz_cfg_origin(c, i), mz_cfg_origin(again, i)) != 0)
                s_fail("written back, an argument changed", mz_cfg_arg(c, i));
    }
    free(text);
    json_decref(obj);
    mz_cfg_free(again);
    mz_cfg_free(c);
    return 0;
}
