"""What never runs, with or without approval.

Disk and filesystem destruction, writes to block devices, kernel changes, recursive
deletes (or mode and owner changes) of system directories, fork bombs. Matched after
long-option prefixes are expanded (`--rec` is `--recursive`, as getopt_long would take
it) and paths normalised (`//etc`, `/proc/self/root/etc`, `/proc/<pid>/root/…`, `/etc/.`,
symlinks). Every function here returns a reason, or "" when nothing is forbidden, and
never raises: a path it cannot read is judged by its spelling.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

# Programs that only destroy disks, filesystems or the running kernel.
FORBIDDEN_PROGRAMS = frozenset(
    {
        "mkswap", "fdisk", "sfdisk", "cfdisk", "gdisk", "sgdisk", "parted", "partprobe", "wipefs",
        "blkdiscard", "insmod", "rmmod", "modprobe", "kexec", "debugfs", "hdparm", "lvremove",
        "vgremove", "pvremove", "zpool", "nvme", "sg_format", "sg_sanitize", "flash_erase",
        "flash_eraseall", "newfs", "mformat", "delpart", "blkdeactivate",
    }
)  # fmt: skip

_MKFS = re.compile(r"mkfs|^mk[\w-]*fs(?:\.[\w-]+)?$|^mkfs\.")

# Verbs that destroy the data of the device they are given.
_DESTRUCTIVE_VERBS = {
    "cryptsetup": {"luksFormat", "format", "erase", "luksErase", "luksKillSlot", "reencrypt"},
    "integritysetup": {"format"},
    "veritysetup": {"format"},
}

SYSTEM_DIRS = frozenset(
    {
        "/", "/bin", "/boot", "/boot/efi", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64",
        "/libx32", "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys",
        "/tmp", "/usr", "/var", "/snap", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64",
        "/usr/local", "/usr/share", "/usr/include", "/var/lib", "/var/log", "/var/spool",
        "/var/cache", "/var/backups", "/var/mail", "/var/opt", "/var/www",
    }
)  # fmt: skip

_BLOCK_DEVICE = re.compile(
    r"^/dev/(?:sd[a-z]+\d*|hd[a-z]+\d*|vd[a-z]+\d*|xvd[a-z]+\d*|nvme\d+(?:n\d+)?(?:p\d+)?|mmcblk\d+(?:p\d+|boot\d+|rpmb)?"
    r"|dm-\d+|md\d*(?:p\d+)?|md/.*|loop\d+|nbd\d+(?:p\d+)?|zram\d+|sr\d+|sg\d+|st\d+|nst\d+|rbd\d+|ubd\w*|pmem\d+\w*"
    r"|mtd\w*|mtdblock\d+|ram\d+|bcache\d+|drbd\d+|vg[\w.-]*/.+|mapper/.+|disk/.+|block/.+|bsg/.+|root|mem|kmem|port"
    r"|cdrom|dvd|fd\d+|sda|zd\d+|zvol/.+|ubi\w*|cciss/.+|ida/.+|rd/.+|i2o/.+|xvd\w*|lvm/.+)$"
)

# Where a program writes: any argument, the last operand, or only what follows of= (dd family).
_WRITES_ANY = frozenset(
    {
        "tee", "truncate", "shred", "sponge", "socat", "nc", "ncat", "netcat", "pv", "sed", "awk", "gawk",
        "mawk", "perl", "python", "python2", "python3", "ruby", "node", "nodejs", "php", "lua", "tclsh",
        "busybox", "dd_rescue", "flashrom", "nandwrite", "mtd_debug", "cdrecord", "wodim", "growisofs",
        "sg_dd", "sg_write_same", "sg_unmap", "bash", "sh", "dash", "zsh", "ksh", "fish", "csh", "tcsh",
        "fallocate", "losetup_write",
    }
)  # fmt: skip
_WRITES_LAST = frozenset(
    {"cp", "mv", "install", "rsync", "ln", "qemu-img", "ddrescue", "e2image", "ntfsclone", "xfs_copy", "scp", "gzip"}
)
_DD_FAMILY = frozenset({"dd", "dcfldd", "sg_dd", "dc3dd"})
_OUTPUT_OPTIONS = ("--output=", "--output-file=", "--outfile=", "--target-directory=", "of=", "vf=", "hof=")
_OUTPUT_FLAGS = frozenset({"-o", "-O", "--output", "--output-file"})
_TARGET_FLAGS = frozenset({"-t", "--target-directory"})

_LONG_OPTIONS = {
    "rm": ("--force", "--interactive", "--one-file-system", "--no-preserve-root", "--preserve-root",
           "--recursive", "--dir", "--verbose", "--help", "--version"),
    "chmod": ("--changes", "--no-preserve-root", "--preserve-root", "--quiet", "--silent", "--verbose",
              "--reference", "--recursive", "--help", "--version"),
    "chown": ("--changes", "--dereference", "--no-dereference", "--from", "--no-preserve-root",
              "--preserve-root", "--quiet", "--silent", "--reference", "--recursive", "--verbose",
              "--help", "--version"),
    "mdadm": ("--zero-superblock", "--zero", "--create", "--assemble", "--build", "--grow", "--incremental",
              "--manage", "--misc", "--monitor", "--detail", "--examine", "--query", "--stop", "--remove"),
}  # fmt: skip
_LONG_OPTIONS["chgrp"] = _LONG_OPTIONS["chown"]
_RECURSIVE_SHORT = {"rm": "rR", "chmod": "R", "chown": "R", "chgrp": "R"}

_PROC_ROOT = re.compile(r"^/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/(?:root|cwd)(?=/|$)")

# Code that spawns itself in the background, whatever the function is called.
_SHELL_FUNCTION = re.compile(r"(?:function\s+)?([^\s(){}|;&<>'\"`$]+)\s*\(\s*\)\s*\{([^}]*)\}")
_SHELL_FUNCTION_KW = re.compile(r"function\s+([^\s(){}|;&<>'\"`$]+)\s*\{([^}]*)\}")
_SELF_SPAWN = re.compile(r"\$0\s*[|&]|\$\{0\}\s*[|&]|\bexec\s+\$0\s*&")
_FORK_LOOP = re.compile(
    r"\b(?:while|until|loop|for|each|times|forever|repeat)\b[^\n]{0,40}?\bfork\b"
    r"|\bfork\b[^\n]{0,20}?\b(?:while|until|for|loop)\b",
    re.I,
)
_SHELL_SPAWN_LOOP = re.compile(r"\b(?:while|until)\b.*\bdo\b.*[^&>]&(?!&)[^&]*\bdone\b")


def program_name(word: str) -> str:
    return os.path.basename(word)


def expand_long(prog: str, word: str) -> str:
    """The option getopt_long would take `word` for (`--rec` → `--recursive`)."""
    if not word.startswith("--") or word == "--":
        return word
    name, eq, value = word.partition("=")
    options = _LONG_OPTIONS.get(prog, ())
    if name in options:
        return word
    matches = [o for o in options if o.startswith(name)]
    if len(matches) == 1:
        return matches[0] + eq + value
    if name.startswith("--no-p") and "--no-preserve-root".startswith(name):
        return "--no-preserve-root"  # ambiguous or not, it must never pass
    return word


def path_forms(word: str, base: Path | None = None) -> set[str]:
    """The ways the kernel may read a path: as spelled, normalised, and with symlinks resolved."""
    forms: set[str] = set()
    raw = word
    if not raw or "\x00" in raw:
        return forms
    if not raw.startswith("/"):
        if base is None:
            return forms
        raw = f"{base}/{raw}"
    p = re.sub(r"/+", "/", raw)
    for _ in range(8):
        stripped = _PROC_ROOT.sub("", p)
        if stripped == p:
            break
        p = stripped or "/"
    p = os.path.normpath(p) if p != "/" else "/"
    p = "/" if p.startswith("//") else p
    forms.add(p)
    try:
        real = os.path.realpath(p)
        real = _PROC_ROOT.sub("", real) or "/"
        forms.add(os.path.normpath(real))
    except (OSError, ValueError):
        pass
    return forms


def is_block_device(word: str, base: Path | None = None) -> bool:
    for form in path_forms(word, base):
        if _BLOCK_DEVICE.match(form):
            return True
        try:
            if stat.S_ISBLK(os.stat(form).st_mode):
                return True
        except (OSError, ValueError):
            continue
    return False


def _system_dir(word: str, base: Path | None) -> bool:
    target = word
    for suffix in ("/*", "/.*", "/."):
        while target.endswith(suffix) and target != suffix:
            target = target[: -len(suffix)] or "/"
    if target in {"/*", "/.", "/.*"}:
        target = "/"
    return any(form in SYSTEM_DIRS for form in path_forms(target, base))


def _option_values(args: Sequence[str], flags: frozenset[str]) -> list[str]:
    """Values given to output-like options: `of=X`, `--output=X`, `-o X`, `-oX`."""
    values: list[str] = []
    for i, word in enumerate(args):
        for prefix in _OUTPUT_OPTIONS:
            if word.startswith(prefix):
                values.append(word[len(prefix) :])
        if word in flags and i + 1 < len(args):
            values.append(args[i + 1])
        elif len(word) > 2 and word[:2] in flags and word[2] == "/":
            values.append(word[2:])
    return values


def forbidden_argv(argv: Sequence[str], base: Path | None = None) -> str:
    """Why this argv (or a program it wraps) must never run, or ""."""
    words = list(argv)
    for i, word in enumerate(words):
        prog = program_name(word)
        rest = words[i + 1 :]
        if prog in FORBIDDEN_PROGRAMS or _MKFS.search(prog):
            return "touches disks, filesystems or the kernel"
        verbs = _DESTRUCTIVE_VERBS.get(prog)
        if verbs and any(a in verbs for a in rest):
            return "destroys the data on a device"
        if prog in _DD_FAMILY and any(
            a.startswith(("of=", "vf=", "hof=")) and is_block_device(a.partition("=")[2], base) for a in rest
        ):
            return "writes raw data to a device"
        if prog == "badblocks" and any(a.startswith("-") and not a.startswith("--") and "w" in a for a in rest):
            return "overwrites a whole device (badblocks -w)"
        if prog == "mdadm" and any(
            expand_long("mdadm", a).startswith("--zero-superblock") or a == "--zero" for a in rest
        ):
            return "erases RAID superblocks"
        if prog in _WRITES_ANY and any(is_block_device(a, base) for a in rest):
            return "writes to a raw device"
        operands = [a for a in rest if not a.startswith("-")]
        if prog in _WRITES_LAST and operands and is_block_device(operands[-1], base):
            return "writes to a raw device"
        flags = _OUTPUT_FLAGS | _TARGET_FLAGS if prog in _WRITES_LAST else _OUTPUT_FLAGS
        if (prog in _WRITES_ANY | _WRITES_LAST | _DD_FAMILY or i == 0) and any(
            is_block_device(v, base) for v in _option_values(rest, flags)
        ):
            return "writes to a raw device"
        if prog in _RECURSIVE_SHORT:
            expanded = [expand_long(prog, a) for a in rest]
            if "--no-preserve-root" in expanded:
                return "removes the root filesystem (--no-preserve-root)"
            recursive = any(
                a == "--recursive"
                or (a.startswith("-") and not a.startswith("--") and set(a[1:]) & set(_RECURSIVE_SHORT[prog]))
                for a in expanded
            )
            targets = [a for a in expanded if not a.startswith("-")]
            if recursive and any(_system_dir(t, base) for t in targets):
                return f"recursively {prog}s a system directory"
        if prog == "find" and "-delete" in rest:
            starts = []
            for a in rest:
                if a.startswith("-") or a in {"(", "!"}:
                    break
                starts.append(a)
            if any(_system_dir(s, base) for s in starts):
                return "recursively deletes a system directory"
    return ""


def fork_bomb(text: str) -> bool:
    """Shell functions that call themselves in the background, scripts that spawn `$0`,
    interpreter code that forks in a loop, shell loops that keep spawning jobs."""
    for pattern in (_SHELL_FUNCTION, _SHELL_FUNCTION_KW):
        for match in pattern.finditer(text):
            name, body = match.group(1), match.group(2)
            calls = re.search(r"(?<![^\s|&;({`])" + re.escape(name) + r"(?![^\s|&;)}`])", body)
            if calls and "&" in body:
                return True
    if _SELF_SPAWN.search(text):
        return True
    if _FORK_LOOP.search(text):
        return True
    return bool(_SHELL_SPAWN_LOOP.search(text))
