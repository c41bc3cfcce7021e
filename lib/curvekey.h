/*
 * ZeroMQ CURVE key files, shared by the nginx module and the daemons.
 *
 *   <name>.key   two lines: "public <40 Z85 chars>" and "secret <40 Z85>"
 *   <name>.pub   one line:  "<40 Z85 chars>"
 *
 * '#' starts a comment line; surrounding whitespace is ignored.
 */

#ifndef MM_CURVEKEY_H
#define MM_CURVEKEY_H

#include "mm.h"


#define MM_CURVE_KEY_LEN  40


/* public/secret: MM_CURVE_KEY_LEN + 1 bytes each; secret may be NULL */
mm_status_t mm_curvekey_load(const char *path, char *public_key,
    char *secret_key, char *err, size_t err_size);


#endif /* MM_CURVEKEY_H */
