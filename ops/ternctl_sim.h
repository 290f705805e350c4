/* ternctl sim internals: the simulator's inputs (topology JSON, trace CSV) and its subcommands. */
#ifndef TERN_OPS_TERNCTL_SIM_H
#define TERN_OPS_TERNCTL_SIM_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "node.h"
#include "placement.h"
#include "ternctl_internal.h"

/* A topology, its bucket policies and a trace, owned together. */
typedef struct ops__sim_input {
    node_topology document;      /* as node_topology_load read it; owns the policies */
    plc_topology topology;       /* a copy of document.prices */
    plc_bucket_policy *policies; /* views of document's: [0] is the "*" default */
    char **policy_buckets;       /* the bucket each policy is for ([0] "*" or NULL) */
    size_t policy_count;
    char **buckets; /* interned bucket names */
    uint32_t *bucket_policy;
    size_t bucket_count, bucket_cap;
    plc_sim_object *objects;
    size_t object_count, object_cap;
    plc_sim_event *events;
    size_t event_count, event_cap;
    plc_sim_trace trace; /* views of the arrays above, set by ops__sim_read_trace */
} ops__sim_input;

/* Each returns 0, or TERN_EPARSE / TERN_EIO / TERN_ENOMEM with "FILE[:LINE]: where: what" in
 * why. Read the topology first (with node_topology_load, the parser ternd uses): the trace's
 * regions and buckets are resolved against it. */
int ops__sim_read_topology(ops__sim_input *in, const char *path, char *why, size_t why_len);
int ops__sim_read_trace(ops__sim_input *in, const char *path, char *why, size_t why_len);
void ops__sim_input_free(ops__sim_input *in);

/* "ternctl sim ...": argv[0] is the command's name (not read); o->json_output may be preset. */
int ops__sim_main(ops__options *o, int argc, char **argv);
/* "ternctl sim gen ..." and "ternctl sim convert-wc98 ...", argv[0] the subcommand. */
int ops__sim_gen(ops__options *o, int argc, char **argv);
int ops__sim_convert_wc98(ops__options *o, int argc, char **argv);

/* The usage lines of the sim commands, for ternctl's help. */
extern const char ops__sim_usage[];

#endif
