/*
 * pause: the process that holds a pod's namespaces in `make cluster` (containerd's sandbox_image).
 * It sleeps until told to stop, reaps any zombie reparented to it (it is PID 1 of the pod), and
 * exits 0 on SIGINT or SIGTERM. Built static so its image holds this one file.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signal_number) {
    (void)signal_number;
    _exit(0);
}

static void reap(int signal_number) {
    (void)signal_number;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    if (getpid() != 1) {
        /* Still useful outside a pod, but say so: the reaping only matters as PID 1. */
        static const char note[] = "pause: not PID 1; sleeping anyway\n";
        (void)!write(STDERR_FILENO, note, sizeof(note) - 1);
    }
    if (sigaction(SIGINT, &on_stop, NULL) < 0 || sigaction(SIGTERM, &on_stop, NULL) < 0 ||
        sigaction(SIGCHLD, &on_child, NULL) < 0) {
        return 1;
    }
    for (;;) {
        pause();
    }
}
