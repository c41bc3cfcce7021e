/*
 * Status strings for mm_status_t.
 */

#include "mm.h"


static const char *mm_status_str[] = {
    [MM_OK]       = "ok",
    [MM_ENOMEM]   = "out of memory",
    [MM_EBADDATA] = "malformed input",
    [MM_ETOOBIG]  = "input too big",
    [MM_ENOTFOUND] = "not found",
    [MM_EEXPIRED] = "signature expired",
    [MM_EFORGED]  = "signature does not verify",
    [MM_ETTL]     = "expiry beyond allowed TTL",
    [MM_EIO]      = "I/O error",
    [MM_ECORRUPT] = "data corrupt",
    [MM_EAGAIN]   = "try again later",
};


const char *
mm_strstatus(mm_status_t st)
{
    if ((unsigned) st >= sizeof(mm_status_str) / sizeof(mm_status_str[0])
        || mm_status_str[st] == NULL)
    {
        return "unknown status";
    }

    return mm_status_str[st];
}
