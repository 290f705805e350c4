/* ternctl entry point. */
#include <stdio.h>

#include "ops.h"

int main(int argc, char **argv)
{
    return ops_main(argc, argv, stdout, stderr);
}
