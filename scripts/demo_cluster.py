"""Start a 3-node fakepve cluster for `make demo` and talk to its control endpoint.

    demo_cluster.py start WORKDIR    start the harness in the background, wait until it is
                                     ready, create the seed-000 templates, write WORKDIR/env
    demo_cluster.py table WORKDIR    print the cluster's VMs: vmid, name, node, IPv4, status
    demo_cluster.py stop WORKDIR     stop the harness
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def control(info, method, path, body=None):
    req = urllib.request.Request(
        'http://127.0.0.1:{}{}'.format(info['control_port'], path), method=method,
        data=None if body is None else json.dumps(body).encode(), headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b'null')


def start(workdir, python):
    os.makedirs(workdir, exist_ok=True)
    out = open(os.path.join(workdir, 'harness.out'), 'w')
    proc = subprocess.Popen(
        [python, os.path.join(ROOT, 'tests/fakepve/harness.py'), '--nodes', 'pve01', 'pve02', 'pve03',
         '--time-scale', '0.02', '--workdir', workdir, '--ignore-stdin'],
        stdout=out, stderr=open(os.path.join(workdir, 'harness.err'), 'w'), stdin=subprocess.DEVNULL)
    with open(os.path.join(workdir, 'pid'), 'w') as f:
        f.write(str(proc.pid))
    deadline = time.monotonic() + 60
    info = None
    while info is None:
        if proc.poll() is not None:
            sys.exit('fakepve exited: ' + open(os.path.join(workdir, 'harness.err')).read())
        if time.monotonic() > deadline:
            sys.exit('fakepve did not start within 60 s')
        line = open(os.path.join(workdir, 'harness.out')).readline()
        if line.endswith('\n'):
            info = json.loads(line)
        else:
            time.sleep(0.1)  # polling a file another process writes, with a deadline
    # Seed 000's storages and its Packer-built templates 9001-9003.
    # RBD for disks; CephFS (shared, a directory here) for cloud-init snippets, which the
    # agent writes into the storage's directory because the API cannot upload them.
    control(info, 'POST', '/ceph', {'add_storage': 'rbd'})
    control(info, 'POST', '/storages', {'cephfs': {
        'type': 'cephfs', 'path': os.path.join(os.path.abspath(workdir), 'cephfs'), 'shared': 1,
        'content': 'snippets,iso,vztmpl,backup,import'}})
    # Hosts the size seed 000 runs on (the agent's pre-flight checks the room), not fakepve's 8 GiB.
    gib = 1 << 30
    control(info, 'POST', '/capacity', {'nodes': {'maxcpu': 32, 'maxmem': 128 * gib, 'mem': 8 * gib},
                                        'storages': {'rbd': 2048 * gib, 'cephfs': 1024 * gib}})
    for vmid, name in ((9001, 'dns-tpl'), (9002, 'manager-tpl'), (9003, 'worker-tpl')):
        control(info, 'POST', '/vms', {
            'vmid': vmid, 'name': name, 'node': 'pve01', 'template': True,
            'config': {'scsi0': 'rbd:base-{}-disk-0,size=4G'.format(vmid), 'scsihw': 'virtio-scsi-single',
                       'memory': 2048, 'cores': 1, 'net0': 'virtio=BC:24:11:00:00:{:02X},bridge=vmbr2'.format(vmid % 256),
                       'ostype': 'l26', 'agent': 1}})
    with open(os.path.join(workdir, 'token'), 'w') as f:
        f.write('{}={}\n'.format(info['token_id'], info['token_secret']))
    with open(os.path.join(workdir, 'info.json'), 'w') as f:
        json.dump(info, f)
    print('fakepve: 3 nodes (pve01-03) at https://127.0.0.1:{}, templates 9001-9003'.format(info['api_port']))


def table(workdir):
    info = json.load(open(os.path.join(workdir, 'info.json')))
    guests = sorted(control(info, 'GET', '/state')['guests'], key=lambda g: g['vmid'])
    print('{:>5}  {:<12} {:<6} {:<18} {:>5} {:>7}  {}'.format('VMID', 'NAME', 'NODE', 'IPV4', 'CORES', 'MEMORY', 'STATE'))
    for g in guests:
        if g.get('template'):
            continue
        c = g.get('config', {})
        ip = dict(p.split('=', 1) for p in str(c.get('ipconfig0', '')).split(',') if '=' in p).get('ip', '-')
        print('{:>5}  {:<12} {:<6} {:<18} {:>5} {:>7}  {}'.format(
            g['vmid'], g.get('name', ''), g['node'], ip, c.get('cores', '-'), c.get('memory', '-'), g.get('status')))


def stop(workdir):
    try:
        os.kill(int(open(os.path.join(workdir, 'pid')).read()), 15)
    except (OSError, ValueError):
        pass


if __name__ == '__main__':
    cmd, workdir = sys.argv[1], sys.argv[2]
    if cmd == 'start':
        start(workdir, sys.argv[3])
    elif cmd == 'table':
        table(workdir)
    else:
        stop(workdir)
