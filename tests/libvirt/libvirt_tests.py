"""libvirt layer: Debian's libvirt drives our installed QEMU (docs/libvirt.md).

A private libvirtd runs in session mode as the unprivileged user nobody,
with its sockets, configuration, cache and state under a temporary
directory of BUILD/libvirt and its own D-Bus session bus: the system's
libvirt (if any) is never touched.  Our QEMU is installed there with
scripts/install-qemu and given as the domain's <emulator>; the domain is
type 'qemu' (TCG) and boots the Linux test guest with <kernel>/<initrd>.

The guest talks to the test over its serial port, a unix socket the test
connects to, so the test can tell it when to go on.
"""
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time

import guests

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "/opt/qemu-dm"
PMEM_SIZE = 128 << 20
# Errors libvirtd 9.0 logs about this host whatever the emulator: an
# unprivileged daemon cannot use /dev/kvm (or there is none), no dnsmasq
# (the network driver), no DMI table in this VM.
HOST_NOISE = ("virHostCPUGetCPUID", "virHostCPUGetTscInfo", "dnsmasqCapsNewFromBinary",
              "udevGetDMIData")

GUEST_SCRIPT = "#!/bin/sh\n" + guests.LOAD_PMEM + """modprobe ext4
mount -t ext4 -o dax /dev/pmem0 /mnt && echo "@@ mounted dax"
echo 'first write, before save' > /mnt/first.txt
sync /mnt/first.txt && echo "@@ phase1 ok"
stty -echo < /dev/ttyS0 2>/dev/null
read cmd < /dev/ttyS0
echo "@@ after_restore $(cat /mnt/first.txt | tr ' ' _)"
echo 'second write, after restore' > /mnt/second.txt
sync /mnt/second.txt && echo "@@ phase2 ok"
umount /mnt && echo "@@ unmounted"
i=0
while [ -b /dev/pmem0 ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/pmem0 ] || echo "@@ pmem_gone yes"
echo "@@ done"
read cmd < /dev/ttyS0
poweroff -f
"""


def domain_xml(name, emulator, kernel, initrd, pmem, console):
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <maxMemory slots='2' unit='MiB'>2048</maxMemory>
  <vcpu>1</vcpu>
  <cpu>
    <numa>
      <cell id='0' cpus='0' memory='512' unit='MiB'/>
    </numa>
  </cpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <serial type='unix'>
      <source mode='bind' path='{console}'/>
      <target port='0'/>
    </serial>
    {pmem_xml(pmem)}
    <memballoon model='none'/>
  </devices>
</domain>
"""


def pmem_xml(pmem):
    return f"""<memory model='virtio-pmem' access='shared'>
      <source><path>{pmem}</path></source>
      <target><size unit='KiB'>{PMEM_SIZE >> 10}</size></target>
      <alias name='ua-pmem0'/>
    </memory>"""


class Libvirtd:
    """A private session-mode libvirtd as nobody, our QEMU installed beside."""

    def __init__(self, build):
        self.build = build

    def __enter__(self):
        base = os.path.join(os.path.abspath(self.build), "libvirt")
        os.makedirs(base, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="lv-", dir=base)
        os.chmod(self.dir, 0o755)
        self.user = pwd.getpwnam("nobody")
        for d in ("home", "run", "config", "cache", "vm"):
            os.makedirs(os.path.join(self.dir, d))
        inst = os.path.join(self.dir, "inst")
        subprocess.run([os.path.join(TOP, "scripts", "install-qemu"),
                        os.path.join(self.build, "ours", "qemu"), PREFIX, inst],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.emulator = inst + PREFIX + "/bin/qemu-system-x86_64"
        for d in ("home", "run", "config", "cache", "vm"):
            os.chown(os.path.join(self.dir, d), self.user.pw_uid, self.user.pw_gid)
        os.chmod(os.path.join(self.dir, "run"), 0o700)
        bus = f"unix:path={self.dir}/run/dbus.sock"
        self.env = {"HOME": f"{self.dir}/home", "XDG_RUNTIME_DIR": f"{self.dir}/run",
                    "XDG_CONFIG_HOME": f"{self.dir}/config",
                    "XDG_CACHE_HOME": f"{self.dir}/cache",
                    "DBUS_SESSION_BUS_ADDRESS": bus, "DBUS_SYSTEM_BUS_ADDRESS": bus,
                    "PATH": f"{os.path.dirname(self.emulator)}:/usr/sbin:/usr/bin:/sbin:/bin",
                    "LANG": "C"}
        self.dbus = self._spawn(["dbus-daemon", "--session", "--nofork", "--nopidfile",
                                 f"--address={bus}"], "dbus.log")
        self._wait_for(f"{self.dir}/run/dbus.sock")
        self.log_path = os.path.join(self.dir, "libvirtd.log")
        self.daemon = self._spawn(["libvirtd", "--timeout", "0"], "libvirtd.log")
        self._wait_for(f"{self.dir}/run/libvirt/libvirt-sock")
        return self

    def _spawn(self, cmd, log):
        out = open(os.path.join(self.dir, log), "w")
        u = self.user
        return subprocess.Popen(["setpriv", f"--reuid={u.pw_uid}", f"--regid={u.pw_gid}",
                                 "--clear-groups"] + cmd, env=self.env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _wait_for(self, path, timeout=30):
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} did not appear; logs in {self.dir}")
            time.sleep(0.1)

    def virsh(self, *args, check=True, timeout=120):
        u = self.user
        p = subprocess.run(["setpriv", f"--reuid={u.pw_uid}", f"--regid={u.pw_gid}",
                            "--clear-groups", "virsh", "-c", "qemu:///session", *args],
                           env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
        if check and p.returncode:
            raise RuntimeError(f"virsh {' '.join(args)}: {p.stdout.strip()}")
        return p.stdout

    def own(self, path):
        os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def errors(self):
        with open(self.log_path, errors="replace") as f:
            lines = [line.strip() for line in f if " error : " in line]
        return [line for line in lines if not any(n in line for n in HOST_NOISE)]

    def __exit__(self, *exc):
        for p in (self.daemon, self.dbus):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        # QEMU processes a failed test left behind
        subprocess.run(["pkill", "-u", "nobody", "-f", self.emulator])
        if not exc[0]:
            shutil.rmtree(self.dir, ignore_errors=True)


class Console:
    """The guest's serial port: a unix socket the domain's QEMU listens on."""

    def __init__(self, path):
        self.path = path
        self.text = ""
        self.sock = None

    def connect(self, timeout=60):
        self.sock = guests.connect_unix(self.path, timeout, interval=0.2)
        self.sock.settimeout(0.5)

    def wait(self, marker, timeout=180):
        deadline = time.monotonic() + timeout
        while marker not in self.text:
            if time.monotonic() > deadline:
                raise RuntimeError(f"guest did not print {marker!r}:\n{self.text[-3000:]}")
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise RuntimeError(f"console closed before {marker!r}:\n{self.text[-3000:]}")
            self.text += data.decode(errors="replace")

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def close(self):
        if self.sock:
            self.sock.close()


def host_read(image, path):
    p = subprocess.run(["debugfs", "-R", f"cat /{path}", image],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return p.stdout.decode(errors="replace")


def scenario(build):
    """One guest through every step; each step's outcome is a result."""
    res = {}
    with Libvirtd(build) as lv:
        vm = os.path.join(lv.dir, "vm")
        pmem = os.path.join(vm, "pmem.img")
        with open(pmem, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, PMEM_SIZE)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "4096", pmem], check=True)
        lv.own(pmem)
        initrd = os.path.join(vm, "initrd.gz")
        with open(os.path.join(build, "guest", "initramfs.cpio.gz"), "rb") as f:
            base = f.read()
        with open(initrd, "wb") as f:
            f.write(base + guests._cpio_newc({"test.sh": (0o100755, GUEST_SCRIPT.encode())}))
        console_path = os.path.join(vm, "console.sock")
        xml = os.path.join(vm, "domain.xml")
        with open(xml, "w") as f:
            f.write(domain_xml("dm-pmem", lv.emulator, os.path.join(build, "guest", "vmlinuz"),
                               initrd, pmem, console_path))
        dev = os.path.join(vm, "pmem.xml")
        with open(dev, "w") as f:
            f.write(pmem_xml(pmem))

        # 5 first: defining the domain makes libvirt probe our binary
        caps = lv.virsh("domcapabilities", "--emulatorbin", lv.emulator,
                        "--virttype", "qemu", "--machine", "pc")
        con = Console(console_path)
        try:
            lv.virsh("define", xml)
            lv.virsh("start", "dm-pmem")
            con.connect()
            con.wait("@@ phase1 ok")

            out = lv.virsh("qemu-monitor-command", "dm-pmem",
                           '{"execute":"x-query-virtio-pmem"}')
            stats = json.loads(out)["return"][0]["stats"]
            res["qmp"] = (stats["requests"] > 0 and stats["syncs"] > 0
                          and stats["errors"] == 0,
                          f"x-query-virtio-pmem through virsh: {out.strip()[:600]}")

            state = os.path.join(vm, "saved")
            lv.own(vm)
            con.close()
            lv.virsh("save", "dm-pmem", state, timeout=300)
            gone = lv.virsh("domstate", "dm-pmem").strip()
            lv.virsh("restore", state, timeout=300)
            before = con.text
            con = Console(console_path)
            con.text = before + "\n"      # the old connection may have kept the EOL
            con.connect()
            con.send("go")
            con.wait("@@ unmounted")
            vals = guests.guest_values(con.text)
            # read once the guest unmounted: debugfs does not replay the journal
            host1 = host_read(pmem, "first.txt")
            host2 = host_read(pmem, "second.txt")
            res["dax"] = (vals.get("mounted") == "dax" and vals.get("phase1") == "ok"
                          and host1 == "first write, before save\n",
                          f"guest said {vals}; host file first.txt: {host1!r}")
            res["save"] = (gone == "shut off"
                           and vals.get("after_restore") == "first_write,_before_save"
                           and vals.get("phase2") == "ok"
                           and host2 == "second write, after restore\n",
                           f"state after save: {gone!r}; guest said {vals}; "
                           f"host second.txt {host2!r}")

            # the device as the running domain has it (libvirt matches it whole)
            live = lv.virsh("dumpxml", "dm-pmem")
            m = re.search(r"<memory model='virtio-pmem'.*?</memory>", live, re.S)
            with open(dev, "w") as f:
                f.write(m.group(0) if m else pmem_xml(pmem))
            detach = lv.virsh("detach-device", "dm-pmem", dev, "--live", check=False)
            con.wait("@@ done")
            vals = guests.guest_values(con.text)
            live = lv.virsh("dumpxml", "dm-pmem", check=False)
            con.send("bye")
            res["detach"] = ("successfully" in detach and vals.get("pmem_gone") == "yes"
                             and "virtio-pmem" not in live,
                             f"virsh: {detach.strip()}; guest said {vals}")
        except Exception as e:
            for k in ("dax", "qmp", "save", "detach"):
                res.setdefault(k, (False, f"{e!r}\nconsole: {con.text[-2000:]}"))
        finally:
            con.close()
            lv.virsh("destroy", "dm-pmem", check=False)
            lv.virsh("undefine", "dm-pmem", check=False)
        errors = lv.errors()
        res["probe"] = ("<domain>qemu</domain>" in caps
                        and "<machine>pc-i440fx-10.0-dm1</machine>" in caps
                        and not errors,
                        f"errors in the daemon log: {errors}\n{caps[:400]}" if errors else
                        "domcapabilities: -M pc is pc-i440fx-10.0-dm1; no error in the daemon log "
                        f"but the host's own ({', '.join(HOST_NOISE)})")
    return res


KEYS = [
    ("dax", "a domain with <memory model='virtio-pmem' access='shared'>: the guest's "
            "DAX write and fsync are in the host file"),
    ("qmp", "virsh qemu-monitor-command x-query-virtio-pmem shows the flushes"),
    ("save", "virsh save / restore: the guest runs on with its pmem data"),
    ("detach", "virsh detach-device of the virtio-pmem device: the guest sees it go"),
    ("probe", "libvirt probes our binary with no error in the daemon log"),
]


def run(tap, build):
    why = None
    for tool in ("libvirtd", "virsh", "dbus-daemon", "setpriv", "debugfs"):
        if not shutil.which(tool):
            why = f"{tool} not installed (scripts/deps.sh)"
    if not os.path.exists(os.path.join(build, "ours", "qemu", "qemu-img")):
        why = "our qemu-img not built (make install-extras)"
    if why:
        for _, name in KEYS:
            tap.result(False, f"libvirt: {name}", diag=why)
        return
    try:
        res = scenario(build)
    except Exception as e:
        res = {k: (False, repr(e)) for k, _ in KEYS}
    for k, name in KEYS:
        ok, diag = res.get(k, (False, "not reached"))
        tap.result(ok, f"libvirt: {name}", diag=diag)
