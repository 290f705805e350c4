/* ops: ternctl, the operator's CLI; talks to nodes' admin API over HTTP with libcurl. */
#ifndef TERN_OPS_H
#define TERN_OPS_H

#include <stdio.h>

/*
 * Runs ternctl with its command line; returns the process exit code
 * (0 ok, 1 the command failed, e.g. node unreachable or credentials refused,
 * 2 usage error). Output goes to out, diagnostics to err.
 */
int ops_main(int argc, char **argv, FILE *out, FILE *err);

#endif
