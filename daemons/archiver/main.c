/*
 * media-archiver -f <config> [-n] [-d] [-v]: see daemons/common/dmain.h
 * and conf/archiver.conf.in.
 */

#include "archiver.h"


int
main(int argc, char **argv)
{
    return dmain(argc, argv, &archiver_main);
}
