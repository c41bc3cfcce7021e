/*
 * media-analytics -f <config> [-n] [-d] [-v]: see daemons/common/dmain.h
 * and conf/analytics.conf.in.
 */

#include "analytics.h"


int
main(int argc, char **argv)
{
    return dmain(argc, argv, &analytics_main);
}
