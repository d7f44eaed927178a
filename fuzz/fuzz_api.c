/* The local JSON-RPC API (api.c: parse, dispatch, every method, pushed
 * execute requests and their answers, events) of a real node, with a
 * neighbour P linked, over the in-memory connection manager. Input: a
 * nodesim script (nodesim.h); lines without a channel letter are API
 * messages from client 1, so a plain JSON-RPC request is a valid input. */
#include <stddef.h>
#include <stdint.h>

#include "nodesim.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    mz_sim_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mz_sim_script(data, size, 'A');
    return 0;
}
