#include <string.h>

#include "util/spawn.h"

int mz__spawn_piped(uv_loop_t *loop, uv_process_t *proc, char **argv, uv_pipe_t *in,
                    uv_pipe_t *out, uv_pipe_t *err, uv_exit_cb on_exit, unsigned flags)
{
    return mz__spawn_piped_env(loop, proc, argv, NULL, in, out, err, on_exit, flags);
}

int mz__spawn_piped_env(uv_loop_t *loop, uv_process_t *proc, char **argv, char **env,
                        uv_pipe_t *in, uv_pipe_t *out, uv_pipe_t *err, uv_exit_cb on_exit,
                        unsigned flags)
{
    uv_process_options_t o;
    uv_stdio_container_t io[3];

    memset(&o, 0, sizeof o);
    io[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    io[0].data.stream = (uv_stream_t *)in;
    io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[1].data.stream = (uv_stream_t *)out;
    io[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[2].data.stream = (uv_stream_t *)err;
    o.file = argv[0];
    o.args = argv;
    o.env = env;
    o.stdio = io;
    o.stdio_count = 3;
    o.exit_cb = on_exit;
    o.flags = flags;
    return uv_spawn(loop, proc, &o);
}
