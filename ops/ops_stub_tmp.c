/* temporary: replaced by ops/ternctl.c */
#include "ops.h"
int ops_main(int argc, char **argv, FILE *out, FILE *err)
{
    (void)argc; (void)argv; (void)out; (void)err;
    return 2;
}
