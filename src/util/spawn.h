/* Starting a program with its stdin, stdout and stderr on pipes (internal):
 * shared by the MCP bridge (stdio servers) and `meshzero serve`. */
#ifndef MZ_SPAWN_H
#define MZ_SPAWN_H

#include <uv.h>

/* Spawns argv (no shell) on loop with pipes in (its stdin), out, err, which
 * must be initialised (uv_pipe_init) by the caller; flags are libuv's
 * process flags. Returns uv_spawn's result: on failure the caller still
 * closes proc and the pipes, as libuv requires. */
int mz__spawn_piped(uv_loop_t *loop, uv_process_t *proc, char **argv, uv_pipe_t *in,
                    uv_pipe_t *out, uv_pipe_t *err, uv_exit_cb on_exit, unsigned flags);
/* The same with an environment ("NAME=value" strings, NULL-terminated;
 * NULL: this process's). */
int mz__spawn_piped_env(uv_loop_t *loop, uv_process_t *proc, char **argv, char **env,
                        uv_pipe_t *in, uv_pipe_t *out, uv_pipe_t *err, uv_exit_cb on_exit,
                        unsigned flags);

#endif
