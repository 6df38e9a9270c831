"""Which parts of antonov.c the student writes, and how to find them in C text.

The student version (student/antonov.c) is the reference antonov.c with the bodies of the
functions in TODO_FUNCTIONS replaced by TODO comments and stubs, and a comment on top;
tests/test_libckpt_assignment.py checks that nothing else differs, so the two cannot drift.
"""
from __future__ import annotations

import re

# The functions the student writes (programs/antonov/student/antonov.c has them as TODOs);
# everything else in the student's file is the reference's, word for word.
TODO_FUNCTIONS = ("antonov_scan_fds", "antonov_save", "antonov_finish_save",
                  "antonov_reopen_files", "antonov_reload")


def _code_only(text: str) -> str:
    """`text` with comments and the insides of literals blanked (same length), so that their
    braces do not count."""
    out, i, n = list(text), 0, len(text)
    while i < n:
        if text.startswith("/*", i):
            a, i = i, text.index("*/", i + 2) + 2
            b = i
        elif text.startswith("//", i):
            a, i = i, (text.find("\n", i) + 1 or n)
            b = i
        elif text[i] in "\"'":
            a = b = i + 1
            while text[b] != text[i]:
                b += 2 if text[b] == "\\" else 1
            i = b + 1
        else:
            i += 1
            continue
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "
    return "".join(out)


def function_bodies(text: str, names=TODO_FUNCTIONS) -> dict:
    """name -> (start, end) of the body of each function defined at the left margin, from
    its opening brace to its closing one."""
    code, out = _code_only(text), {}
    for name in names:
        for m in re.finditer(rf"^[A-Za-z_][^;{{}}]*\b{name}\s*\(", code, re.M):
            brace = code.find("{", m.end())
            if 0 <= code.find(";", m.end()) < brace:
                continue  # a declaration
            depth, i = 0, brace
            while True:
                depth += {"{": 1, "}": -1}.get(code[i], 0)
                if depth == 0:
                    break
                i += 1
            out[name] = (brace, i + 1)
            break
    return out


def without_todo_bodies(text: str) -> str:
    """The text with each TODO function's body replaced by `{ ... }`."""
    spans = sorted(function_bodies(text).values(), reverse=True)
    for a, b in spans:
        text = text[:a] + "{ ... }" + text[b:]
    return text
