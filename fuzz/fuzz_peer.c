/* Peer messages through the real MessageHandler (handler.c and every
 * per-type handler: hello, welcome, sync, announce, alive, bye, query,
 * query_result, error, execute, execute_result, event) of a real node,
 * linked to the harness over the in-memory connection manager. Input: a
 * nodesim script (nodesim.h); lines without a channel letter are raw bytes
 * from the neighbour. */
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
    mz_sim_script(data, size, 'R');
    return 0;
}
