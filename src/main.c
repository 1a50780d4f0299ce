// SPDX-License-Identifier: MIT
/* ktlsgw entry point: argv, signals and wiring only. */
#include <stdio.h>
int main(void)
{
	puts("ktlsgw: not yet wired");
	return 1;
}
