/* sim: the client history that the linearizability checker reads. */
#include <assert.h>
#include <stdlib.h>

#include "sim.h"

size_t sim_history_add(sim_history *h, const sim_hist_op *op)
{
    if (h->count == h->capacity) {
        h->capacity = h->capacity ? h->capacity * 2 : 256;
        h->ops = realloc(h->ops, h->capacity * sizeof(*h->ops));
        assert(h->ops);
    }
    h->ops[h->count] = *op;
    return h->count++;
}

void sim_history_free(sim_history *h)
{
    free(h->ops);
    h->ops = NULL;
    h->count = h->capacity = 0;
}
