/*
 * media-packager -f <config> [-n] [-d] [-v]: see daemons/common/dmain.h
 * and conf/packager.conf.in.
 */

#include "packager.h"


int
main(int argc, char **argv)
{
    return dmain(argc, argv, &packager_main);
}
