/* Benchmark workloads, each printing its own figure on stdout:
 *   workload open PATH N          N x (openat + read + close) on PATH; prints the loop time in seconds
 *   workload rate RATE SECONDS    RATE getppid() calls per second, paced per millisecond, for SECONDS;
 *                                 prints the number of calls made */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int open_loop(const char *path, long n)
{
	char buf[64];
	double start = now();

	for (long i = 0; i < n; i++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			perror(path);
			return 1;
		}
		if (read(fd, buf, sizeof(buf)) < 0)
			return 1;
		close(fd);
	}
	printf("%.6f\n", now() - start);
	return 0;
}

static int rate_loop(double rate, double seconds)
{
	double start = now();
	long slots = (long)(seconds * 1000), calls = 0;
	double per_slot = rate / 1000.0, owed = 0;

	for (long slot = 0; slot < slots; slot++) {
		owed += per_slot;
		while (owed >= 1) {
			getppid();
			calls++;
			owed -= 1;
		}
		while (now() < start + (slot + 1) / 1000.0)
			;
	}
	printf("%ld\n", calls);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "open") == 0)
		return open_loop(argv[2], atol(argv[3]));
	if (argc == 4 && strcmp(argv[1], "rate") == 0)
		return rate_loop(atof(argv[2]), atof(argv[3]));
	fprintf(stderr, "usage: %s open PATH N | rate RATE SECONDS\n", argv[0]);
	return 2;
}
