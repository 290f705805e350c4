/* S3 HTTP server (being written). */
#include "api.h"
