"""A roomy alternate signal stack for a thread that has compiled an OpenVINO model.

OpenVINO's CPU plugin (2026.4) installs a 20,144-byte alternate signal stack on the thread that
compiles a model, and on an AMX CPU (this machine's Xeon) it also enables AMX for the process,
which makes the kernel's signal frame larger. Python runs its C-level signal handler on the
alternate stack (it installs every handler with SA_ONSTACK), so the next signal handled on that
thread with a Python handler, e.g. SIGCHLD from a DataLoader worker (PyTorch's handler), could
not get its frame onto the stack and the kernel killed the process with SIGSEGV (si_code
SI_KERNEL, in wait4/poll; measured: 4 of 6 runs of a deploy followed by a search with data
workers in one process). ``roomy_alt_stack`` replaces such a stack with one of ``ALT_STACK_BYTES``
(kept alive here); a thread without an alternate stack is left alone (its handlers run on its
own stack). Linux only; elsewhere a no-op.
"""
from __future__ import annotations

import ctypes
import sys
import threading

ALT_STACK_BYTES = 1 << 20
SS_ONSTACK, SS_DISABLE = 1, 2
_stacks: dict[int, ctypes.Array[ctypes.c_char]] = {}   # thread id -> its stack (kept alive)


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                ("ss_size", ctypes.c_size_t)]


def current_alt_stack() -> tuple[int, int]:
    """(flags, size) of the calling thread's alternate signal stack; (SS_DISABLE, 0) if none
    or not on Linux."""
    if not sys.platform.startswith("linux"):
        return SS_DISABLE, 0
    libc = ctypes.CDLL(None, use_errno=True)
    cur = _StackT()
    if libc.sigaltstack(None, ctypes.byref(cur)) != 0:
        return SS_DISABLE, 0
    return int(cur.ss_flags), int(cur.ss_size)


def roomy_alt_stack() -> None:
    """Give the calling thread an ALT_STACK_BYTES alternate stack if it has a smaller one."""
    flags, size = current_alt_stack()
    if flags & (SS_DISABLE | SS_ONSTACK) or size >= ALT_STACK_BYTES:
        return
    buf = ctypes.create_string_buffer(ALT_STACK_BYTES)
    new = _StackT(ctypes.addressof(buf), 0, ALT_STACK_BYTES)
    if ctypes.CDLL(None, use_errno=True).sigaltstack(ctypes.byref(new), None) == 0:
        _stacks[threading.get_ident()] = buf
