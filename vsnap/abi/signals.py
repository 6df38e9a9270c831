"""Linux x86-64 signal numbers and what a shell prints when a process dies of one."""

NUMBERS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6,
           "SIGBUS": 7, "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12,
           "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15, "SIGSTKFLT": 16, "SIGCHLD": 17,
           "SIGCONT": 18, "SIGSTOP": 19, "SIGTSTP": 20, "SIGTTIN": 21, "SIGTTOU": 22,
           "SIGURG": 23, "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27,
           "SIGWINCH": 28, "SIGIO": 29, "SIGPWR": 30, "SIGSYS": 31}
NAMES = {n: s for s, n in NUMBERS.items()}

DESCRIPTIONS = {"SIGSEGV": "Segmentation fault", "SIGILL": "Illegal instruction",
                "SIGFPE": "Floating point exception", "SIGBUS": "Bus error",
                "SIGKILL": "Killed", "SIGXCPU": "CPU time limit exceeded",
                "SIGABRT": "Aborted", "SIGTRAP": "Trace/breakpoint trap"}


def status_of(signal: str) -> int:
    """The exit status a shell reports for a process killed by `signal` (128 + number)."""
    return 128 + NUMBERS[signal]
