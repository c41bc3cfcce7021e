/*
 * media-notifier -f <config> [-n] [-d] [-v]: see daemons/common/dmain.h
 * and conf/notifier.conf.in.
 */

#include "notifier.h"


int
main(int argc, char **argv)
{
    return dmain(argc, argv, &notifier_main);
}
