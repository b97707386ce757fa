#include <stdio.h>
#include "cli.h"
int main(int argc, char **argv) { (void)argc; (void)argv; return TC_EXIT_OK; }
