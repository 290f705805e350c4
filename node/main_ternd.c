/* ternd entry point (being built: see api/ and node/). */
#include <stdio.h>

#include "api.h"

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "ternd: not yet wired\n");
    return 1;
}
