"""A signal during mixtral-compile's link step leaves nothing behind (issue 9, part 2).

    signal-cleanup.py MIXTRAL_COMPILE MODEL_DIR WORK_DIR

For SIGTERM (sent to mixtral-compile alone, as `kill PID` does), SIGINT (likewise) and SIGINT
sent to its whole process group (as Ctrl-C in a terminal does): mixtral-compile links with a
fake linker driver that writes its output file, starts a child of its own (as clang++ starts
ld) and then waits. Once both run, the signal is sent. Afterwards the output folder and the
temp directory (TMPDIR, where the intermediate object goes) must be empty, the driver and its
child must be gone, and mixtral-compile must have died of that signal. Prints one line per case.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

# A linker driver that writes its -o output, starts a child (as clang++ starts ld) and waits.
# Python rather than sh: sh would start the child with SIGINT ignored, which no driver does.
FAKE_LINKER = r"""
import os, subprocess, sys
args = sys.argv[1:]
with open(args[args.index("-o") + 1], "w") as f:
    f.write("partial")
child = subprocess.Popen(["sleep", "60"])
with open(os.environ["PIDS"] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.rename(os.environ["PIDS"] + ".tmp", os.environ["PIDS"])
child.wait()
"""


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def run_case(compile_exe, model, work, name, sig, group):
    case = os.path.join(work, name)
    shutil.rmtree(case, ignore_errors=True)
    out_dir, tmp_dir = os.path.join(case, "out"), os.path.join(case, "tmp")
    os.makedirs(out_dir)
    os.makedirs(tmp_dir)
    linker = os.path.join(case, "fake-linker.sh")
    with open(linker, "w") as f:
        f.write(f"#!{sys.executable}\n" + FAKE_LINKER)
    os.chmod(linker, 0o755)
    pids = os.path.join(case, "pids")
    env = dict(os.environ, TMPDIR=tmp_dir, PIDS=pids)
    proc = subprocess.Popen(
        [compile_exe, model, "--max-seq-len", "16", "--linker", linker, "-o",
         os.path.join(out_dir, "model")],
        env=env, start_new_session=group, stderr=subprocess.DEVNULL,
        # As from an interactive shell: lit's workers ignore SIGINT, and children inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not os.path.exists(pids):
        if proc.poll() is not None or time.time() > deadline:
            sys.exit(f"{name}: mixtral-compile ended ({proc.returncode}) before the link ran")
        time.sleep(0.05)
    with open(pids) as f:
        driver, child = (int(p) for p in f.read().split())
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    rc = proc.wait(timeout=60)
    time.sleep(0.2)
    left = sorted(os.listdir(out_dir)) + sorted(os.listdir(tmp_dir))
    problems = []
    if rc != -sig:
        problems.append(f"exit status {rc}, expected death by signal {sig}")
    if left:
        problems.append(f"left behind: {left}")
    for what, pid in (("linker driver", driver), ("driver's child", child)):
        if alive(pid):
            problems.append(f"the {what} ({pid}) still runs")
            os.kill(pid, signal.SIGKILL)
    print(f"{name}: " + ("; ".join(problems) if problems else "clean"))
    return not problems


def main():
    compile_exe, model, work = sys.argv[1:4]
    ok = True
    for name, sig, group in (("sigterm", signal.SIGTERM, False),
                             ("sigint", signal.SIGINT, False),
                             ("sigint-group", signal.SIGINT, True)):
        ok &= run_case(compile_exe, model, work, name, sig, group)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
