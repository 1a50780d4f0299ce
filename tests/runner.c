// SPDX-License-Identifier: MIT
/*
 * The unit-test runner: forks one child per test (crash and sanitizer
 * isolation, alarm() timeout), maps exit 0/77/other to pass/skip/fail and
 * prints "N passed, N failed, N skipped". argv[1], if given, is a substring
 * filter on test names.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include "test.h"

#define GW_TEST_TIMEOUT 60

int test__failed;

struct test_entry {
	const char *name;
	void (*fn)(void);
};

#define TEST(n) {#n, n},
static const struct test_entry tests[] = {
#include "tests.h"
};
#undef TEST

void test__skip(const char *why)
{
	printf("      skip: %s\n", why);
	fflush(stdout);
	_exit(77);
}

const char *test__cert(const char *name)
{
	static char path[4096];
	const char *dir = getenv("GW_CERTS");

	snprintf(path, sizeof(path), "%s/%s", dir ? dir : "build/default/certs", name);
	return path;
}

int main(int argc, char **argv)
{
	int passed = 0, failed = 0, skipped = 0;
	const char *filter = argc > 1 ? argv[1] : NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		const struct test_entry *t = &tests[i];
		int status;
		pid_t pid;

		if (filter && !strstr(t->name, filter))
			continue;
		fflush(stdout);
		fflush(stderr);
		pid = fork();
		if (pid == 0) {
			alarm(GW_TEST_TIMEOUT);
			t->fn();
			/* exit(), not _exit(): LeakSanitizer runs at exit in SAN=1 builds */
			exit(test__failed ? 1 : 0);
		}
		if (pid < 0 || waitpid(pid, &status, 0) < 0) {
			perror("fork/waitpid");
			failed++;
			continue;
		}
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			printf("ok    %s\n", t->name);
			passed++;
		} else if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
			printf("SKIP  %s\n", t->name);
			skipped++;
		} else {
			if (WIFSIGNALED(status))
				printf("FAIL  %s (signal %s)\n", t->name,
				       strsignal(WTERMSIG(status)));
			else
				printf("FAIL  %s\n", t->name);
			failed++;
		}
	}
	printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	return failed ? 1 : 0;
}
