/* mz_msg: the JSON envelope of msg.c behind one opaque handle. */
#include <stdlib.h>

#include "wire/message.h"

struct mz_msg {
    json_t *env;                /* owned */
};

static mz_msg *s_wrap(json_t *env)
{
    mz_msg *msg;

    if (env == NULL)
        return NULL;
    if ((msg = malloc(sizeof *msg)) == NULL) {
        json_decref(env);
        return NULL;
    }
    msg->env = env;
    return msg;
}

mz_status mz__msg_parse(const char *buf, size_t len, const mz_msg_limits *lim, mz_msg **out,
                        char *id_out, mz_err *err)
{
    json_t *env = NULL;
    mz_status rc = mz_msg_parse(buf, len, lim, &env, id_out, err);

    *out = NULL;
    if (rc != MZ_OK)
        return rc;
    if ((*out = s_wrap(env)) == NULL)
        return mz_err_set(err, MZ_ENOMEM, "message: allocating");
    return MZ_OK;
}

mz_msg *mz__msg_new(const char *type, const char *sender, const char *recipient,
                    json_t *payload)
{
    json_t *env = mz_msg_new(type, sender, recipient, payload);

    return s_wrap(env);
}

void mz__msg_free(mz_msg *msg)
{
    if (msg == NULL)
        return;
    json_decref(msg->env);
    free(msg);
}

const char *mz__msg_id(const mz_msg *msg) { return mz_msg_id(msg->env); }
const char *mz__msg_type(const mz_msg *msg) { return mz_msg_type(msg->env); }
const char *mz__msg_sender(const mz_msg *msg) { return mz_msg_sender(msg->env); }
const char *mz__msg_recipient(const mz_msg *msg) { return mz_msg_recipient(msg->env); }
const char *mz__msg_timestamp(const mz_msg *msg) { return mz_msg_timestamp(msg->env); }
int mz__msg_hops(const mz_msg *msg) { return mz_msg_hops(msg->env); }
const json_t *mz__msg_payload(const mz_msg *msg) { return mz_msg_payload(msg->env); }
bool mz__msg_is_sealed(const mz_msg *msg) { return mz_msg_is_sealed(msg->env); }

mz_status mz__msg_set_id(mz_msg *msg, const char *id)
{
    return json_object_set_new(msg->env, "id", json_string(id)) == 0 ? MZ_OK : MZ_ENOMEM;
}

void mz__msg_set_hops(mz_msg *msg, int hops) { mz_msg_set_hops(msg->env, hops); }

mz_status mz__msg_sign(mz_msg *msg, const mz_identity *id, mz_err *err)
{
    return mz_msg_sign(msg->env, id, err);
}

mz_status mz__msg_verify(const mz_msg *msg, mz_err *err)
{
    return mz_msg_verify(msg->env, err);
}

mz_status mz__msg_seal(mz_msg *msg, const unsigned char key[32], mz_err *err)
{
    return mz_msg_seal(msg->env, key, err);
}

mz_status mz__msg_open(mz_msg *msg, const unsigned char key[32], mz_err *err)
{
    return mz_msg_open(msg->env, key, 0, err);
}

char *mz__msg_dump(const mz_msg *msg, size_t *len) { return mz_msg_dump(msg->env, len); }
